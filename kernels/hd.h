// MG_HD marks the scalar math that both backends compile (DESIGN principle 6):
// __host__ __device__ under nvcc, nothing for the C++ compiler.
#pragma once

#ifdef __CUDACC__
#define MG_HD __host__ __device__
#else
#define MG_HD
#endif
