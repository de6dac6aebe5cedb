// CPU build of the unchanged kernels/*.cu files, with one C entry point that
// launches any registry instantiation by name (tests call it through ctypes).
// accel_entries.inc is generated from accel/kernel_registry.py by
// tests/kernels/cpu_build.py: one ENTRY(name expression) per instantiation.
#include "cuda_cpu_shim.h"

#include "elementwise.cu"
#include "losses.cu"
#include "reductions.cu"
#include "optimizers.cu"
#include "accumulate.cu"
#include "gemm.cu"

namespace {

// One character per parameter, so Python can pack arguments and check dtypes:
// scalars f d i q (float double int long long); pointers to them F D I Q,
// H (__half*), B (unsigned char*), P (pointer to pointers).
template <class T> constexpr char type_code() {
  if constexpr (std::is_pointer_v<T>) {
    using P = std::remove_cv_t<std::remove_pointer_t<T>>;
    if constexpr (std::is_pointer_v<P>) return 'P';
    else if constexpr (std::is_same_v<P, float>) return 'F';
    else if constexpr (std::is_same_v<P, double>) return 'D';
    else if constexpr (std::is_same_v<P, __half>) return 'H';
    else if constexpr (std::is_same_v<P, int>) return 'I';
    else if constexpr (std::is_same_v<P, long long>) return 'Q';
    else if constexpr (std::is_same_v<P, unsigned char>) return 'B';
    else return '?';
  } else if constexpr (std::is_same_v<T, float>) return 'f';
  else if constexpr (std::is_same_v<T, double>) return 'd';
  else if constexpr (std::is_same_v<T, int>) return 'i';
  else if constexpr (std::is_same_v<T, long long>) return 'q';
  else return '?';
}

template <class F> struct Kernel;
template <class... A> struct Kernel<void (*)(A...)> {
  static constexpr size_t arity = sizeof...(A);
  static const char* signature() {
    static const char sig[] = {type_code<A>()..., '\0'};
    return sig;
  }
  // argv[i] points at the value of parameter i.
  template <void (*K)(A...), size_t... I>
  static void launch(dim3 grid, dim3 block, int threaded, void** argv, std::index_sequence<I...>) {
    if (threaded) cpucuda::launch_threaded(K, grid, block, *static_cast<A*>(argv[I])...);
    else cpucuda::launch_sequential(K, grid, block, *static_cast<A*>(argv[I])...);
  }
};

template <auto K>
void launch(dim3 grid, dim3 block, int threaded, void** argv) {
  using Params = Kernel<decltype(K)>;
  Params::template launch<K>(grid, block, threaded, argv, std::make_index_sequence<Params::arity>{});
}

struct Entry {
  const char* name;
  const char* signature;
  void (*launch)(dim3, dim3, int, void**);
};

#define ENTRY(...) Entry{#__VA_ARGS__, Kernel<decltype(&__VA_ARGS__)>::signature(), &launch<&__VA_ARGS__>},
const Entry entries[] = {
#include "accel_entries.inc"
};

}  // namespace

extern "C" {
int accel_shim_count() { return sizeof(entries) / sizeof(entries[0]); }
const char* accel_shim_name(int i) { return entries[i].name; }
const char* accel_shim_signature(int i) { return entries[i].signature; }
void accel_shim_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, int threaded,
                       void** argv) {
  entries[i].launch(dim3(gx, gy, gz), dim3(bx, by), threaded, argv);
}
}
