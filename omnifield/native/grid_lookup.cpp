// Multilinear lookup in stacks of small dense grids on the CPU (OpenMP): forward and first backward.
//
// Semantics are those of the torch twin `_grid_lookup` (omnifield/fields/grid_lookup.py): grid p of
// `grids [P, R, ..., R, F]` (D axes of R vertices) is read at `coords [N, P, D]`; on axis i,
// pos = c_i (R - 1), cell = clamp(floor(pos), 0, R - 2), frac = pos - cell (so coordinates outside
// [0, 1] extrapolate from the border cell); corner k has bit i of k on axis i, its row is
// p R^D + sum_i v_i R^(D-1-i) and its weight the product over axes of frac_i (bit 1) or 1 - frac_i.
//
// With `sum_grids` the P lookups of a point are summed into one row, out [N, F] (CAM's modulation, the
// tri-plane's sum aggregation) without writing the [N, P, F] intermediate; the backward then reads one
// gradient row per point for all its grids.
//
// The grid gradient is race-free without atomics: threads own whole grids (each grid's rows are
// written by one thread). Higher derivatives are left to the twin (see the Python bridge).

#include <torch/extension.h>

#include <omp.h>

#include <cmath>
#include <cstdint>

namespace {

template <int D>
struct Corners {
  static constexpr int kCount = 1 << D;
  int64_t row[kCount];
  float weight[kCount];
  float frac[D];
};

// Rows and weights of the 2^D corners around point `c` (D coordinates) in the grid starting at row `base`.
template <int D>
inline void locate(const float* c, int64_t res, int64_t base, Corners<D>& out) {
  int64_t vertex[D];
  const float last = static_cast<float>(res - 2);
  for (int i = 0; i < D; ++i) {
    const float pos = c[i] * static_cast<float>(res - 1);
    const float cell = std::fmin(std::fmax(std::floor(pos), 0.0f), last);
    out.frac[i] = pos - cell;
    vertex[i] = static_cast<int64_t>(cell);
  }
  for (int k = 0; k < Corners<D>::kCount; ++k) {
    int64_t row = 0;
    float w = 1.0f;
    for (int i = 0; i < D; ++i) {
      const int bit = (k >> i) & 1;
      row = row * res + vertex[i] + bit;
      w *= bit ? out.frac[i] : 1.0f - out.frac[i];
    }
    out.row[k] = base + row;
    out.weight[k] = w;
  }
}

// d weight_k / d frac_i: the product with axis i's factor replaced by its slope (+1 or -1).
template <int D>
inline float weight_slope(const Corners<D>& cs, int k, int i) {
  float w = 1.0f;
  for (int j = 0; j < D; ++j) {
    const int bit = (k >> j) & 1;
    w *= j == i ? (bit ? 1.0f : -1.0f) : (bit ? cs.frac[j] : 1.0f - cs.frac[j]);
  }
  return w;
}

struct Shape {
  int64_t n, p, res, f, grid_rows;
};

Shape check(const torch::Tensor& grids, const torch::Tensor& coords, int d) {
  TORCH_CHECK(grids.device().is_cpu() && coords.device().is_cpu(), "grid_lookup native: CPU tensors only");
  TORCH_CHECK(grids.scalar_type() == torch::kFloat32 && coords.scalar_type() == torch::kFloat32,
              "grid_lookup native: float32 only");
  TORCH_CHECK(grids.is_contiguous() && coords.is_contiguous(), "grid_lookup native: contiguous tensors only");
  TORCH_CHECK(coords.dim() == 3 && coords.size(1) == grids.size(0) && coords.size(2) == d,
              "grid_lookup native: coords must be [N, P, D]");
  const int64_t res = grids.size(1);
  TORCH_CHECK(res >= 2, "grid_lookup native: grids need at least 2 vertices per axis");
  int64_t rows = 1;
  for (int i = 0; i < d; ++i) {
    TORCH_CHECK(grids.size(1 + i) == res, "grid_lookup native: grids must have equal axes");
    rows *= res;
  }
  return Shape{coords.size(0), grids.size(0), res, grids.size(-1), rows};
}

// The output (or output-gradient) row of point n's lookup in grid p: n with sum_grids, else n P + p.
inline int64_t out_row(int64_t n, int64_t p, const Shape& s, bool sum_grids) { return sum_grids ? n : n * s.p + p; }

template <int D>
void forward_impl(const float* g, const float* c, float* out, const Shape& s, bool sum_grids) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t p = 0; p < s.p; ++p) {
      Corners<D> cs;
      locate<D>(c + (n * s.p + p) * D, s.res, p * s.grid_rows, cs);
      float* o = out + out_row(n, p, s, sum_grids) * s.f;
      if (p == 0 || !sum_grids)
        for (int64_t f = 0; f < s.f; ++f) o[f] = 0.0f;
      for (int k = 0; k < Corners<D>::kCount; ++k) {
        const float* feat = g + cs.row[k] * s.f;
        for (int64_t f = 0; f < s.f; ++f) o[f] += cs.weight[k] * feat[f];
      }
    }
  }
}

template <int D>
void grad_grids_impl(const float* go, const float* c, float* gg, const Shape& s, bool sum_grids) {
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p = 0; p < s.p; ++p) {
    for (int64_t n = 0; n < s.n; ++n) {
      const int64_t np = n * s.p + p;
      Corners<D> cs;
      locate<D>(c + np * D, s.res, p * s.grid_rows, cs);
      const float* gout = go + out_row(n, p, s, sum_grids) * s.f;
      for (int k = 0; k < Corners<D>::kCount; ++k) {
        float* dst = gg + cs.row[k] * s.f;
        for (int64_t f = 0; f < s.f; ++f) dst[f] += cs.weight[k] * gout[f];
      }
    }
  }
}

template <int D>
void grad_coords_impl(const float* go, const float* g, const float* c, float* gc, const Shape& s, bool sum_grids) {
  const float scale = static_cast<float>(s.res - 1);
#pragma omp parallel for schedule(static)
  for (int64_t np = 0; np < s.n * s.p; ++np) {
    Corners<D> cs;
    locate<D>(c + np * D, s.res, (np % s.p) * s.grid_rows, cs);
    const float* gout = go + out_row(np / s.p, np % s.p, s, sum_grids) * s.f;
    float acc[D] = {};
    for (int k = 0; k < Corners<D>::kCount; ++k) {
      const float* feat = g + cs.row[k] * s.f;
      float dot = 0.0f;
      for (int64_t f = 0; f < s.f; ++f) dot += gout[f] * feat[f];
      for (int i = 0; i < D; ++i) acc[i] += dot * weight_slope<D>(cs, k, i);
    }
    for (int i = 0; i < D; ++i) gc[np * D + i] = acc[i] * scale;
  }
}

template <typename Fn>
void dispatch_dims(int d, Fn&& fn) {
  switch (d) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 3: fn(std::integral_constant<int, 3>{}); break;
    default: TORCH_CHECK(false, "grid_lookup native: grids with 1 to 3 axes only, got ", d);
  }
}

torch::Tensor forward(torch::Tensor grids, torch::Tensor coords, bool sum_grids) {
  const int d = static_cast<int>(grids.dim()) - 2;
  const Shape s = check(grids, coords, d);
  auto out = sum_grids ? torch::empty({s.n, s.f}, coords.options()) : torch::empty({s.n, s.p, s.f}, coords.options());
  dispatch_dims(d, [&](auto dims) {
    forward_impl<decltype(dims)::value>(grids.data_ptr<float>(), coords.data_ptr<float>(), out.data_ptr<float>(), s,
                                        sum_grids);
  });
  return out;
}

std::vector<torch::Tensor> backward(torch::Tensor grad_out, torch::Tensor grids, torch::Tensor coords,
                                    bool need_grids, bool need_coords, bool sum_grids) {
  const int d = static_cast<int>(grids.dim()) - 2;
  const Shape s = check(grids, coords, d);
  grad_out = grad_out.contiguous();
  TORCH_CHECK(sum_grids ? grad_out.sizes() == torch::IntArrayRef({s.n, s.f})
                        : grad_out.sizes() == torch::IntArrayRef({s.n, s.p, s.f}),
              "grid_lookup native: bad grad_out shape");
  torch::Tensor grad_grids, grad_coords;
  dispatch_dims(d, [&](auto dims) {
    constexpr int D = decltype(dims)::value;
    if (need_grids) {
      grad_grids = torch::zeros_like(grids);
      grad_grids_impl<D>(grad_out.data_ptr<float>(), coords.data_ptr<float>(), grad_grids.data_ptr<float>(), s,
                         sum_grids);
    }
    if (need_coords) {
      grad_coords = torch::empty_like(coords);
      grad_coords_impl<D>(grad_out.data_ptr<float>(), grids.data_ptr<float>(), coords.data_ptr<float>(),
                          grad_coords.data_ptr<float>(), s, sum_grids);
    }
  });
  return {grad_grids, grad_coords};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "grids [P, R.., F], coords [N, P, D] -> [N, P, F], or [N, F] summed over grids");
  m.def("backward", &backward, "grads wrt grids and coords (undefined when not needed)");
}
