// Real spherical-harmonics basis of unit directions on the CPU (OpenMP + SIMD), degrees 2..4
// (4, 9 or 16 functions): forward and the gradient wrt the directions.
//
// Twin of omnifield/fields/sh.py::_spherical_harmonics (same constants, the 3DGS / tiny-cuda-nn
// convention). One pass per point instead of one pass over memory per polynomial term; used for the
// colours of 3DGS and the view-direction input of Compact-3DGS's colour MLP.

#include <torch/extension.h>

#include <cstdint>

namespace {

constexpr float C0 = 0.28209479177387814f;
constexpr float C1 = 0.48860251190291987f;
constexpr float C2a = 1.0925484305920792f;   // xy, yz, xz terms
constexpr float C2b = 0.94617469575755997f;  // 3zz - 1 term
constexpr float C2c = 0.31539156525251999f;
constexpr float C2d = 0.54627421529603959f;  // xx - yy term
constexpr float C3a = 0.59004358992664352f;
constexpr float C3b = 2.8906114426405538f;
constexpr float C3c = 0.45704579946446572f;
constexpr float C3d = 0.3731763325901154f;
constexpr float C3e = 1.4453057213202769f;

// out[p, 0:K] for K = degree^2.
template <int Degree>
void forward_impl(const float* __restrict__ dirs, float* __restrict__ out, int64_t n) {
  constexpr int K = Degree * Degree;
#pragma omp parallel for simd schedule(static)
  for (int64_t p = 0; p < n; ++p) {
    const float x = dirs[3 * p], y = dirs[3 * p + 1], z = dirs[3 * p + 2];
    float* o = out + p * K;
    o[0] = C0;
    o[1] = -C1 * y;
    o[2] = C1 * z;
    o[3] = -C1 * x;
    if (Degree > 2) {
      const float xx = x * x, yy = y * y, zz = z * z;
      o[4] = C2a * x * y;
      o[5] = -C2a * y * z;
      o[6] = C2b * zz - C2c;
      o[7] = -C2a * x * z;
      o[8] = C2d * (xx - yy);
      if (Degree > 3) {
        o[9] = C3a * y * (-3.0f * xx + yy);
        o[10] = C3b * x * y * z;
        o[11] = C3c * y * (1.0f - 5.0f * zz);
        o[12] = C3d * z * (5.0f * zz - 3.0f);
        o[13] = C3c * x * (1.0f - 5.0f * zz);
        o[14] = C3e * z * (xx - yy);
        o[15] = C3a * x * (-xx + 3.0f * yy);
      }
    }
  }
}

// grad_dirs[p] = sum_k grad[p, k] d basis_k / d dirs[p] (grad with row stride ldg).
template <int Degree>
void backward_impl(const float* __restrict__ grad, int64_t ldg, const float* __restrict__ dirs,
                   float* __restrict__ grad_dirs, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t p = 0; p < n; ++p) {
    const float x = dirs[3 * p], y = dirs[3 * p + 1], z = dirs[3 * p + 2];
    const float* g = grad + p * ldg;
    float gx = -C1 * g[3], gy = -C1 * g[1], gz = C1 * g[2];
    if (Degree > 2) {
      const float xx = x * x, yy = y * y, zz = z * z;
      gx += C2a * (y * g[4] - z * g[7]) + 2.0f * C2d * x * g[8];
      gy += C2a * (x * g[4] - z * g[5]) - 2.0f * C2d * y * g[8];
      gz += -C2a * (y * g[5] + x * g[7]) + 2.0f * C2b * z * g[6];
      if (Degree > 3) {
        gx += -6.0f * C3a * x * y * g[9] + C3b * y * z * g[10] + C3c * (1.0f - 5.0f * zz) * g[13] +
              2.0f * C3e * x * z * g[14] + 3.0f * C3a * (yy - xx) * g[15];
        gy += 3.0f * C3a * (yy - xx) * g[9] + C3b * x * z * g[10] + C3c * (1.0f - 5.0f * zz) * g[11] -
              2.0f * C3e * y * z * g[14] + 6.0f * C3a * x * y * g[15];
        gz += C3b * x * y * g[10] - 10.0f * C3c * z * (y * g[11] + x * g[13]) +
              C3d * (15.0f * zz - 3.0f) * g[12] + C3e * (xx - yy) * g[14];
      }
    }
    grad_dirs[3 * p] = gx;
    grad_dirs[3 * p + 1] = gy;
    grad_dirs[3 * p + 2] = gz;
  }
}

template <typename Fn>
void dispatch(int64_t degree, Fn&& fn) {
  switch (degree) {
    case 2: fn(std::integral_constant<int, 2>{}); return;
    case 3: fn(std::integral_constant<int, 3>{}); return;
    case 4: fn(std::integral_constant<int, 4>{}); return;
    default: TORCH_CHECK(false, "native SH basis supports degree 2..4, got ", degree);
  }
}

void check_dirs(const torch::Tensor& dirs) {
  TORCH_CHECK(dirs.device().is_cpu() && dirs.scalar_type() == torch::kFloat32, "SH kernel needs CPU float32");
  TORCH_CHECK(dirs.dim() == 2 && dirs.size(1) == 3, "SH kernel needs dirs [N, 3]");
}

torch::Tensor forward(torch::Tensor dirs, int64_t degree) {
  check_dirs(dirs);
  dirs = dirs.contiguous();
  auto out = torch::empty({dirs.size(0), degree * degree}, dirs.options());
  dispatch(degree, [&](auto dc) {
    forward_impl<decltype(dc)::value>(dirs.data_ptr<float>(), out.data_ptr<float>(), dirs.size(0));
  });
  return out;
}

torch::Tensor backward(torch::Tensor grad, torch::Tensor dirs, int64_t degree) {
  check_dirs(dirs);
  dirs = dirs.contiguous();
  grad = grad.to(torch::kFloat32);
  if (grad.stride(1) != 1) grad = grad.contiguous();
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == dirs.size(0) && grad.size(1) == degree * degree,
              "SH kernel backward: grad has the wrong shape");
  auto grad_dirs = torch::empty_like(dirs);
  dispatch(degree, [&](auto dc) {
    backward_impl<decltype(dc)::value>(grad.data_ptr<float>(), grad.stride(0), dirs.data_ptr<float>(),
                                       grad_dirs.data_ptr<float>(), dirs.size(0));
  });
  return grad_dirs;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Real spherical-harmonics basis (CPU, OpenMP)";
  m.def("forward", &forward, "dirs [N, 3] (unit), degree -> [N, degree^2]");
  m.def("backward", &backward, "grad [N, degree^2], dirs [N, 3], degree -> grad wrt dirs [N, 3]");
}
