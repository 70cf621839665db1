// Density and colour of a 3-D Gaussian mixture at query points (CPU, OpenMP over points), no gradients.
//
// Twin of the pair loop in omnifield/fields/gaussians.py::GaussianScene._mixture: each point visits the
// Gaussians of its grid cell (omnifield/fields/gaussian_bins.py) plus the short list of large ones, and
// sums  w = peak_g exp(-m/2)  over those within their cut-off (m = |W_g^T (x - mu_g)|^2 <= cutoff_g).
// With colours, each Gaussian's colour is max(0, sum_k basis[p, k] coeffs[g, k, :] + 0.5) and the
// result is the w-weighted mean (0.5 where the density is ~0).
#include <torch/extension.h>
#include <omp.h>

#include <cmath>
#include <vector>

std::vector<torch::Tensor> mixture_forward(torch::Tensor points, torch::Tensor basis, torch::Tensor means,
                                           torch::Tensor whiten, torch::Tensor peak, torch::Tensor cutoff,
                                           torch::Tensor coeffs, torch::Tensor cell_start, torch::Tensor entries,
                                           torch::Tensor large, torch::Tensor lo, double cell, torch::Tensor res,
                                           bool with_color) {
  const int64_t m = points.size(0);
  const int64_t k = with_color ? coeffs.size(1) : 0;
  auto sigma = torch::zeros({m}, points.options());
  auto rgb = torch::full({with_color ? m : 0, 3}, 0.5f, points.options());
  const float* x = points.data_ptr<float>();
  const float* b = with_color ? basis.data_ptr<float>() : nullptr;
  const float* mu = means.data_ptr<float>();
  const float* w = whiten.data_ptr<float>();
  const float* pk = peak.data_ptr<float>();
  const float* cut = cutoff.data_ptr<float>();
  const float* c = with_color ? coeffs.data_ptr<float>() : nullptr;
  const int64_t* start = cell_start.data_ptr<int64_t>();
  const int64_t* ent = entries.data_ptr<int64_t>();
  const int64_t* big = large.data_ptr<int64_t>();
  const int64_t n_large = large.size(0);
  const float* l = lo.data_ptr<float>();
  const int64_t* r = res.data_ptr<int64_t>();
  float* out_s = sigma.data_ptr<float>();
  float* out_c = with_color ? rgb.data_ptr<float>() : nullptr;
  const float inv_cell = (float)(1.0 / cell);

#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t p = 0; p < m; ++p) {
    const float* xp = x + 3 * p;
    int64_t ijk[3];
    bool inside = true;
    for (int a = 0; a < 3; ++a) {
      const float f = std::floor((xp[a] - l[a]) * inv_cell);
      inside = inside && f >= 0.f && f < (float)r[a];
      ijk[a] = inside ? (int64_t)f : 0;
    }
    const int64_t cell_id = (ijk[0] * r[1] + ijk[1]) * r[2] + ijk[2];
    const int64_t first = inside ? start[cell_id] : 0, last = inside ? start[cell_id + 1] : 0;
    float s = 0.f, acc[3] = {0.f, 0.f, 0.f};
    const float* bp = with_color ? b + k * p : nullptr;
    for (int64_t e = first; e < last + n_large; ++e) {
      const int64_t g = e < last ? ent[e] : big[e - last];
      const float d0 = xp[0] - mu[3 * g], d1 = xp[1] - mu[3 * g + 1], d2 = xp[2] - mu[3 * g + 2];
      const float* wg = w + 9 * g;  // row-major [3, 3]; z_j = sum_i d_i W[i][j]
      const float z0 = d0 * wg[0] + d1 * wg[3] + d2 * wg[6];
      const float z1 = d0 * wg[1] + d1 * wg[4] + d2 * wg[7];
      const float z2 = d0 * wg[2] + d1 * wg[5] + d2 * wg[8];
      const float maha = z0 * z0 + z1 * z1 + z2 * z2;
      if (maha > cut[g]) continue;
      const float wt = pk[g] * std::exp(-0.5f * maha);
      s += wt;
      if (with_color) {
        const float* cg = c + 3 * k * g;
        for (int ch = 0; ch < 3; ++ch) {
          float v = 0.5f;
          for (int64_t q = 0; q < k; ++q) v += bp[q] * cg[3 * q + ch];
          acc[ch] += wt * std::max(v, 0.f);
        }
      }
    }
    out_s[p] = s;
    if (with_color && s > 1e-12f)
      for (int ch = 0; ch < 3; ++ch) out_c[3 * p + ch] = acc[ch] / s;
  }
  return {sigma, rgb};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Gaussian mixture density/colour at points over a spatial index (CPU, OpenMP)";
  m.def("mixture_forward", &mixture_forward, "(sigma [M], rgb [M, 3]) of the mixture at points [M, 3]");
}
