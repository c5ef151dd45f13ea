// Checkpoints: named tensors on disk.
//
// - safetensors (https://github.com/huggingface/safetensors), the interchange format of the
//   Hugging Face ecosystem: an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}, then the tensors' bytes, row-major, little-endian,
//   packed with no gaps. Files we write load in safetensors' Python and Rust readers and back.
// - A training checkpoint is one safetensors file holding several named groups ("model",
//   "optim", ...), each tensor keyed "group.name".
// - NumPy .npy (format 1.0) for one tensor, to look at it in Python.
//
// Note [Checkpoint safety]: saving writes a temporary file in the target's directory,
// fsyncs it and renames it over the target, so a crash or an error never leaves a
// half-written file at the target path, and an error leaves the previous file untouched.
// Loading validates the whole header and the file size against it before reading any data,
// and returns nothing unless everything checked out: a corrupt or hostile file yields a
// metagrad::Error "[load_safetensors] <path>: <what is wrong> (tensor 'name', ...)", never
// a crash, a huge allocation or a partly loaded model.
//
// Tensors are read into and written from CPU memory; POSIX file calls (open, fsync, rename).
#pragma once
#include <map>
#include <string>
#include <string_view>

#include "nn/module.h"
#include "nn/optim/optimizer.h"
#include "nn/param_map.h"
#include "tensor/tensor.h"

namespace metagrad::nn {

using Metadata = std::map<std::string, std::string>;

// Writes `tensors` (any strides; each is written as its contiguous row-major copy) and the
// string metadata to `path` as safetensors, atomically (Note [Checkpoint safety]). Names
// must not be "__metadata__". The data is laid out widest dtype first, so every tensor
// starts at a multiple of its element size, as the reference writer does.
void save_safetensors(const std::string& path, const ParamMap& tensors,
                      const Metadata& metadata = {});

// Reads a safetensors file; fills *metadata (when given) with its "__metadata__" (empty when
// the file has none). Supported dtypes: F32, F64, I64, I32, U8, BOOL.
ParamMap load_safetensors(const std::string& path, Metadata* metadata = nullptr);

// A training checkpoint: groups of tensors ("model" -> state_dict, "optim" -> optimizer
// state, ...) and string metadata (step, config, ...).
struct Checkpoint {
  std::map<std::string, ParamMap> groups;
  Metadata metadata;
};

// Stores every group in one safetensors file, key "group.name". Group names are non-empty
// and contain no '.'; the list of groups is kept in the metadata key kCheckpointGroupsKey
// (reserved) so that empty groups survive the round trip.
void save_checkpoint(const std::string& path, const std::map<std::string, ParamMap>& groups,
                     const Metadata& metadata = {});
// Splits a file back into its groups. A safetensors file written elsewhere (without the
// groups key) is split at the first '.' of each name.
Checkpoint load_checkpoint(const std::string& path);
inline constexpr const char* kCheckpointGroupsKey = "metagrad.checkpoint.groups";

// Checks, before any state is touched, that `loaded` can be copied into `expected`: the
// same keys (when strict; otherwise only the common keys are compared, as
// load_state_dict(strict=false)), each with the same shape and dtype. Throws one
// metagrad::Error "[op] ..." listing every missing key, unexpected key and mismatch.
void validate_against(const ParamMap& loaded, const ParamMap& expected, bool strict = true,
                      const char* op = "validate_against");

// NumPy .npy, format 1.0 (descr '<f4', '<f8', '<i8', '<i4', '|u1', '|b1'; C order; header
// padded to a multiple of 64 bytes ending in '\n'), written atomically like the above.
// A module's state (parameters and buffers, by dotted name) as one safetensors file, and back:
// load_module checks every key, shape and dtype before changing anything (load_state_dict).
void save_module(const std::string& path, const Module& module, const Metadata& metadata = {});
void load_module(const std::string& path, Module& module, bool strict = true);

// An optimizer's state (its moment tensors, step counts and hyper-parameters) as one
// safetensors file: tensors as tensors, scalars in the metadata at full precision.
// load_optimizer validates before changing anything (Optimizer::load_state_dict).
void save_optimizer(const std::string& path, const optim::Optimizer& opt);
void load_optimizer(const std::string& path, optim::Optimizer& opt);

void save_npy(const std::string& path, const Tensor& t);
// Reads .npy versions 1.0-3.0 of the dtypes above (also Fortran order), validating the
// header and the file size: "[load_npy] <path>: <what is wrong>".
Tensor load_npy(const std::string& path);

// Any file written as the checkpoints are (Note [Checkpoint safety]): a temporary file in the
// target's directory, fsynced and renamed over `path`, so readers see the old contents or the
// new, never a torn file. Errors (a full disk, a directory at `path`) throw
// "[op] <path>: <what failed>" and leave the previous file untouched.
void write_file_atomically(const std::string& path, std::string_view contents,
                           const char* op = "write_file");

}  // namespace metagrad::nn
