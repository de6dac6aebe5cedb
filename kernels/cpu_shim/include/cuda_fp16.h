// CPU stand-in for <cuda_fp16.h> (on the include path of the shim build only).
// __half is GCC's _Float16: IEEE binary16 with round-to-nearest-even
// conversions, as __float2half / __half2float do on the GPU.
#pragma once
typedef _Float16 __half;
inline float __half2float(__half h) { return (float)h; }
inline __half __float2half(float f) { return (__half)f; }
