// Tensor::str() and operator<<: a port of PyTorch's torch/_tensor_str.py (its _Formatter,
// _vector_str, _tensor_str_with_formatter, get_summarized_data and _add_suffixes), so the
// output matches Python's repr character for character except "dtype=float64" for
// "dtype=torch.float64". Only the elements that are shown are read: printing a huge tensor
// costs what its summary costs.
#include "tensor/print.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

namespace metagrad {

namespace {

std::mutex g_print_mu;
PrintOptions g_print_opts;

// Python's float formatting ("{:.4f}", "{:.4e}", "{:.0f}"): nan and inf are spelled "nan",
// "inf", "-inf" whatever the format, and a NaN's sign is not shown.
std::string format_double(double v, int precision, char conv) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[512];
  const char fmt[] = {'%', '.', '*', conv, '\0'};
  std::snprintf(buf, sizeof buf, fmt, precision, v);
  return buf;
}

std::string pad_left(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

// Reads the shown elements of a CPU tensor: as double (floating) or int64 (integers, bool).
struct Reader {
  const char* base;
  DType dtype;
  double f(int64_t off) const {
    const char* p = base + off * static_cast<int64_t>(dtype_size(dtype));
    return dtype == DType::Float32 ? static_cast<double>(*reinterpret_cast<const float*>(p))
                                   : *reinterpret_cast<const double*>(p);
  }
  int64_t i(int64_t off) const {
    const char* p = base + off * static_cast<int64_t>(dtype_size(dtype));
    switch (dtype) {
      case DType::Bool:
        return *reinterpret_cast<const bool*>(p) ? 1 : 0;
      case DType::UInt8:
        return *reinterpret_cast<const uint8_t*>(p);
      case DType::Int32:
        return *reinterpret_cast<const int32_t*>(p);
      default:
        return *reinterpret_cast<const int64_t*>(p);
    }
  }
};

// PyTorch's _Formatter: decides int / fixed / scientific mode and the column width from the
// values that will be shown.
class Formatter {
 public:
  Formatter(const Reader& r, const std::vector<int64_t>& offsets, const PrintOptions& o)
      : reader_(r), precision_(o.precision), floating_(is_floating(r.dtype)) {
    if (!floating_) {
      for (int64_t off : offsets) max_width_ = std::max(max_width_, int_str(r.i(off)).size());
      return;
    }
    std::vector<double> vals;  // the nonzero finite values
    for (int64_t off : offsets) {
      const double v = r.f(off);
      if (std::isfinite(v) && v != 0.0) vals.push_back(v);
    }
    if (!vals.empty()) {
      double lo = std::abs(vals[0]), hi = lo;
      for (double v : vals) {
        lo = std::min(lo, std::abs(v));
        hi = std::max(hi, std::abs(v));
        if (v != std::ceil(v)) int_mode_ = false;
      }
      if (int_mode_) {
        // Integral floats print as "3."; the dot takes one more column.
        if (hi / lo > 1000.0 || hi > 1.0e8) {
          sci_mode_ = true;
          for (double v : vals) widen(format_double(v, precision_, 'e'));
        } else {
          for (double v : vals)
            max_width_ = std::max(max_width_, format_double(v, 0, 'f').size() + 1);
        }
      } else if (hi / lo > 1000.0 || hi > 1.0e8 || lo < 1.0e-4) {
        sci_mode_ = true;
        for (double v : vals) widen(format_double(v, precision_, 'e'));
      } else {
        for (double v : vals) widen(format_double(v, precision_, 'f'));
      }
    }
    if (o.sci_mode) sci_mode_ = *o.sci_mode;
  }

  size_t width() const { return max_width_; }

  // The element at `off`, right-aligned to the column width.
  std::string format(int64_t off) const {
    std::string s;
    if (!floating_) {
      s = int_str(reader_.i(off));
    } else {
      const double v = reader_.f(off);
      if (sci_mode_) {
        s = format_double(v, precision_, 'e');
      } else if (int_mode_) {
        s = format_double(v, 0, 'f');
        if (std::isfinite(v)) s += '.';
      } else {
        s = format_double(v, precision_, 'f');
      }
    }
    return pad_left(s, max_width_);
  }

 private:
  std::string int_str(int64_t v) const {
    if (reader_.dtype == DType::Bool) return v ? "True" : "False";
    return std::to_string(v);
  }
  void widen(const std::string& s) { max_width_ = std::max(max_width_, s.size()); }

  Reader reader_;
  int precision_;
  bool floating_;
  bool int_mode_ = true;
  bool sci_mode_ = false;
  size_t max_width_ = 1;
};

// Walks the shown elements: every index of a dimension, or its first and last `edgeitems`
// with "..." between them when the tensor is summarised and the dimension is long enough.
class Printer {
 public:
  Printer(const Tensor& t, const PrintOptions& o, bool summarize)
      : shape_(t.shape()), strides_(t.strides()), o_(o), summarize_(summarize) {}

  bool elided(int64_t d) const { return summarize_ && shape_[d] > 2 * o_.edgeitems; }

  std::vector<int64_t> shown(int64_t d) const {
    std::vector<int64_t> idx;
    const int64_t n = shape_[d];
    if (!elided(d)) {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int64_t i = 0; i < o_.edgeitems; ++i) idx.push_back(i);
      for (int64_t i = n - o_.edgeitems; i < n; ++i) idx.push_back(i);
    }
    return idx;
  }

  // Offsets of the shown elements (get_summarized_data), for the formatter.
  void collect(int64_t d, int64_t off, std::vector<int64_t>& out) const {
    if (d == static_cast<int64_t>(shape_.size())) {
      out.push_back(off);
      return;
    }
    for (int64_t i : shown(d)) collect(d + 1, off + i * strides_[d], out);
  }

  // _tensor_str_with_formatter for the sub-tensor at dim d, storage offset off.
  std::string str(int64_t d, int64_t off, int64_t indent, const Formatter& fmt) const {
    const int64_t ndim = static_cast<int64_t>(shape_.size());
    if (ndim == 0) return fmt.format(off);
    const std::vector<int64_t> idx = shown(d);
    const size_t half = idx.size() / 2;  // where "..." goes when elided
    std::vector<std::string> parts;
    if (d == ndim - 1) {  // _vector_str
      const double per_line_f = std::floor(static_cast<double>(o_.linewidth - indent) /
                                           static_cast<double>(fmt.width() + 2));
      const size_t per_line = static_cast<size_t>(std::max(1.0, per_line_f));
      if (elided(d) && o_.edgeitems == 0) parts.push_back("...");
      for (size_t k = 0; k < idx.size(); ++k) {
        if (elided(d) && k == half) parts.push_back(" ...");
        parts.push_back(fmt.format(off + idx[k] * strides_[d]));
      }
      std::string s = "[";
      for (size_t k = 0; k < parts.size(); ++k) {
        if (k > 0) s += k % per_line == 0 ? ",\n" + std::string(indent + 1, ' ') : ", ";
        s += parts[k];
      }
      return s + "]";
    }
    if (elided(d) && o_.edgeitems == 0) parts.push_back("...");
    for (size_t k = 0; k < idx.size(); ++k) {
      if (elided(d) && k == half) parts.push_back("...");
      parts.push_back(str(d + 1, off + idx[k] * strides_[d], indent + 1, fmt));
    }
    const std::string sep = "," + std::string(ndim - d - 1, '\n') + std::string(indent + 1, ' ');
    std::string s = "[";
    for (size_t k = 0; k < parts.size(); ++k) s += (k ? sep : "") + parts[k];
    return s + "]";
  }

 private:
  const Shape& shape_;
  const Shape& strides_;
  const PrintOptions& o_;
  bool summarize_;
};

// Python's str(tuple(shape)): "(0, 3)", "(5,)", "()".
std::string tuple_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// _add_suffixes: ", suffix" on the last line while it fits in linewidth, else a new line.
std::string add_suffixes(std::string s, const std::vector<std::string>& suffixes, int64_t indent,
                         int64_t linewidth) {
  const size_t nl = s.rfind('\n');
  int64_t last = static_cast<int64_t>(s.size()) -
                 (nl == std::string::npos ? -1 : static_cast<int64_t>(nl)) + 1;
  for (const std::string& suf : suffixes) {
    const int64_t len = static_cast<int64_t>(suf.size());
    if (last + len + 2 > linewidth) {
      s += ",\n" + std::string(indent, ' ') + suf;
      last = indent + len;
    } else {
      s += ", " + suf;
      last += len + 2;
    }
  }
  return s + ")";
}

}  // namespace

void set_printoptions(const PrintOptions& opts) {
  MG_CHECK(opts.precision >= 0 && opts.precision <= 100 && opts.threshold >= 0 &&
               opts.edgeitems >= 0 && opts.linewidth > 0,
           "set_printoptions", "invalid options: precision ", opts.precision, ", threshold ",
           opts.threshold, ", edgeitems ", opts.edgeitems, ", linewidth ", opts.linewidth);
  std::lock_guard<std::mutex> lock(g_print_mu);
  g_print_opts = opts;
}

PrintOptions get_printoptions() {
  std::lock_guard<std::mutex> lock(g_print_mu);
  return g_print_opts;
}

std::string Tensor::str() const {
  if (!defined()) return "[ Tensor (undefined) ]";
  const PrintOptions o = get_printoptions();
  const std::string prefix = "tensor(";
  const int64_t indent = static_cast<int64_t>(prefix.size());
  std::vector<std::string> suffixes;
  // Note [Print tensor device]: the device is shown when it is not the CPU.
  if (!device().is_cpu()) suffixes.push_back("device='" + device().str() + "'");
  Tensor t = device().is_cpu() ? *this : to(Device::cpu());
  std::string body;
  if (numel() == 0) {
    // Empty: NumPy's habit of spelling out any shape but (0,); no values tell the dtype.
    if (dim() != 1) suffixes.push_back("size=" + tuple_str(shape()));
    if (dtype() != DType::Float32) suffixes.push_back(std::string("dtype=") + dtype_name(dtype()));
    body = "[]";
  } else {
    if (o.edgeitems == 0) suffixes.push_back("size=" + tuple_str(shape()));
    // float32 (the default dtype), int64 and bool are recognisable from the values.
    if (dtype() != DType::Float32 && dtype() != DType::Int64 && dtype() != DType::Bool)
      suffixes.push_back(std::string("dtype=") + dtype_name(dtype()));
    const bool summarize = numel() > o.threshold;
    const Reader reader{static_cast<const char*>(t.raw_data()), dtype()};
    Printer printer(t, o, summarize);
    std::vector<int64_t> offsets;
    printer.collect(0, 0, offsets);
    const Formatter fmt(reader, offsets, o);
    body = printer.str(0, 0, indent, fmt);
  }
  // As PyTorch: a leaf shows requires_grad, a result of recorded ops its grad_fn.
  if (grad_fn())
    suffixes.push_back("grad_fn=<" + detail::grad_fn_name(*grad_fn()) + ">");
  else if (requires_grad())
    suffixes.push_back("requires_grad=True");
  return add_suffixes(prefix + body, suffixes, indent, o.linewidth);
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.str();
}

}  // namespace metagrad
