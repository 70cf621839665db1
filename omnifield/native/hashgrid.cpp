// Multi-resolution hash encoding on the CPU (OpenMP): forward, grad wrt the table and x, and the
// second-order terms of the x gradient (for eikonal / PDE losses that differentiate it again).
//
// Semantics are those of the torch twin `_hash_encode` (omnifield/fields/hashgrid.py): level l has
// resolution R_l, cell = clamp(floor(x * R_l), 0, R_l - 1), frac = x * R_l - cell (float32, as the
// twin), 2^D corners blended with (bi/tri/quadri)linear weights; dense levels index
// sum_i c_i (R_l + 1)^i, hashed levels (XOR_i c_i * pi_i) mod T with uint32 wrap-around (T is a power
// of two, so the low bits equal the twin's int64 remainder).
//
// The table gradient is race-free without atomics or per-thread copies: threads own whole levels
// (each level's slice of the table is written by exactly one thread).

#include <torch/extension.h>

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

constexpr uint32_t kPrimes[4] = {1u, 2654435761u, 805459861u, 3674653429u};

struct Level {
  float res;            // R_l as float (the twin multiplies by R_l in the input dtype)
  int64_t stride;       // R_l + 1
  int64_t offset;       // first row of the level in the flat table
  int64_t rows;         // rows of the level in the flat table
  uint32_t hash_mask;   // size - 1 for hashed levels
  bool dense;
};

// Per-level layout; the levels must tile the table's rows exactly, in order, and each level's slice
// (rows x features floats) must be addressable with 32-bit indices.
std::vector<Level> make_levels(const torch::Tensor& resolutions, const torch::Tensor& offsets,
                               const torch::Tensor& sizes, const torch::Tensor& dense, int64_t table_rows,
                               int64_t features) {
  const auto res = resolutions.contiguous().to(torch::kInt64);
  const auto off = offsets.contiguous().to(torch::kInt64);
  const auto siz = sizes.contiguous().to(torch::kInt64);
  const auto den = dense.contiguous().to(torch::kBool);
  const int64_t n_levels = res.numel();
  std::vector<Level> levels(n_levels);
  for (int64_t l = 0; l < n_levels; ++l) {
    const int64_t r = res.data_ptr<int64_t>()[l];
    const int64_t size = siz.data_ptr<int64_t>()[l];
    const bool is_dense = den.data_ptr<bool>()[l];
    TORCH_CHECK(r >= 1, "hash grid resolution must be >= 1");
    TORCH_CHECK(is_dense || (size > 0 && (size & (size - 1)) == 0),
                "hashed levels need a power-of-two table size");
    TORCH_CHECK(size * features <= static_cast<int64_t>(UINT32_MAX),
                "hash grid level of ", size, " rows x ", features, " features is too large for the kernel");
    levels[l] = Level{static_cast<float>(r), r + 1, off.data_ptr<int64_t>()[l], size,
                      static_cast<uint32_t>(size - 1), is_dense};
    const int64_t expected = l == 0 ? 0 : levels[l - 1].offset + levels[l - 1].rows;
    TORCH_CHECK(levels[l].offset == expected, "hash grid levels must tile the table in order");
  }
  TORCH_CHECK(n_levels > 0 && levels.back().offset + levels.back().rows == table_rows,
              "hash grid table has ", table_rows, " rows, the level layout needs a different number");
  return levels;
}

// The backward runs level-major: each thread takes whole levels, so the working set is one level's slice of
// the table (it stays in cache) and the table gradient has a single writer per row. Points go in
// blocks of kBlock: their cells, corner rows and weights are computed in SIMD lanes (the loop is
// written for the vectorizer), then read by gathers (forward) or per point (scatters to the gradient).
constexpr int64_t kBlock = 64;

// Corner rows (relative to the level's offset), weights and fractional positions of a block of points.
template <int D>
struct CornerBlock {
  static constexpr int C = 1 << D;
  uint32_t row[C][kBlock];
  float w[C][kBlock];
  float frac[D][kBlock];
};

// Corner k's row in its level from the cell, in 32-bit integers (vectorizes; a level has <= 2^30 rows).
template <int D, bool Dense>
inline uint32_t corner_row(const uint32_t (&cell)[D], int k, uint32_t stride, uint32_t hash_mask) {
  if (Dense) {
    uint32_t idx = 0, mult = 1;
#pragma GCC unroll 16
    for (int i = 0; i < D; ++i) {
      idx += (cell[i] + ((k >> i) & 1)) * mult;
      mult *= stride;
    }
    return idx;
  }
  uint32_t h = 0;
#pragma GCC unroll 16
  for (int i = 0; i < D; ++i) h ^= (cell[i] + ((k >> i) & 1)) * kPrimes[i];
  return h & hash_mask;
}

// Points p0 .. p0 + count - 1 of level lv into cb; returns count.
template <int D, bool Dense>
inline int64_t locate_block_in(const float* __restrict__ x, int64_t p0, int64_t n, const Level& lv,
                               CornerBlock<D>& cb) {
  const int64_t count = n - p0 < kBlock ? n - p0 : kBlock;
  const float res = lv.res;
  const uint32_t stride = static_cast<uint32_t>(lv.stride), mask = lv.hash_mask;
  const int32_t max_cell = static_cast<int32_t>(lv.stride - 2);
  const float* __restrict__ xb = x + p0 * D;
#pragma omp simd
  for (int64_t b = 0; b < count; ++b) {
    float frac[D];
    uint32_t cell[D];
#pragma GCC unroll 16
    for (int i = 0; i < D; ++i) {
      const float pos = xb[b * D + i] * res;
      float c = std::floor(pos);
      c = c < 0.0f ? 0.0f : c;
      c = c > res - 1.0f ? res - 1.0f : c;
      frac[i] = pos - c;
      cb.frac[i][b] = frac[i];
      int32_t ci = static_cast<int32_t>(c);  // integer clamp too: rows stay in range for NaN / inf inputs
      ci = ci < 0 ? 0 : (ci > max_cell ? max_cell : ci);
      cell[i] = static_cast<uint32_t>(ci);
    }
#pragma GCC unroll 16
    for (int k = 0; k < CornerBlock<D>::C; ++k) {
      float w = 1.0f;
#pragma GCC unroll 16
      for (int i = 0; i < D; ++i) w *= ((k >> i) & 1) ? frac[i] : 1.0f - frac[i];
      cb.w[k][b] = w;
      cb.row[k][b] = corner_row<D, Dense>(cell, k, stride, mask);
    }
  }
  return count;
}

// locate_block_in for the level's kind (dense or hashed).
template <int D>
inline int64_t locate_block(const float* __restrict__ x, int64_t p0, int64_t n, const Level& lv,
                            CornerBlock<D>& cb) {
  return lv.dense ? locate_block_in<D, true>(x, p0, n, lv, cb) : locate_block_in<D, false>(x, p0, n, lv, cb);
}

// d w_k / d frac_i for all corners k and dims i.
template <int D>
inline void weight_grads(const float (&frac)[D], float (&dw)[1 << D][D]) {
  for (int k = 0; k < (1 << D); ++k) {
    for (int i = 0; i < D; ++i) {
      float g = ((k >> i) & 1) ? 1.0f : -1.0f;
      for (int j = 0; j < D; ++j) {
        if (j != i) g *= ((k >> j) & 1) ? frac[j] : 1.0f - frac[j];
      }
      dw[k][i] = g;
    }
  }
}

// d^2 w_k / d frac_i d frac_j (zero for i == j: the weights are linear in each frac_i).
template <int D>
inline void weight_hessians(const float (&frac)[D], float (&hw)[1 << D][D][D]) {
  for (int k = 0; k < (1 << D); ++k) {
    for (int i = 0; i < D; ++i) {
      for (int j = 0; j < D; ++j) {
        float h = 0.0f;
        if (i != j) {
          h = (((k >> i) & 1) ? 1.0f : -1.0f) * (((k >> j) & 1) ? 1.0f : -1.0f);
          for (int m = 0; m < D; ++m) {
            if (m != i && m != j) h *= ((k >> m) & 1) ? frac[m] : 1.0f - frac[m];
          }
        }
        hw[k][i][j] = h;
      }
    }
  }
}

template <int D>
inline void frac_of(const CornerBlock<D>& cb, int64_t b, float (&frac)[D]) {
  for (int i = 0; i < D; ++i) frac[i] = cb.frac[i][b];
}

// The forward has no shared writes, so its work items are (level, run of kForwardRun points): a thread
// still reads one level's slice of the table at a time, and a few levels (a proposal field's 5) no
// longer leave threads idle (5 whole levels on 2 threads: one thread does 3).
constexpr int64_t kForwardRun = 16384;

// out[l*F + f, p] (feature-major; returned to Python as the [N, L*F] transposed view).
template <int D, int F>
void forward_impl(const float* __restrict__ x, const float* __restrict__ table, float* __restrict__ out,
                  int64_t n, const std::vector<Level>& levels) {
  const int64_t n_levels = static_cast<int64_t>(levels.size());
  const int64_t n_runs = (n + kForwardRun - 1) / kForwardRun;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t item = 0; item < n_levels * n_runs; ++item) {
    const int64_t l = item / n_runs, first = (item % n_runs) * kForwardRun;
    const int64_t last = first + kForwardRun < n ? first + kForwardRun : n;
    const Level& lv = levels[l];
    const float* __restrict__ tl = table + lv.offset * F;
    float* __restrict__ ol = out + l * F * n;
    CornerBlock<D> cb;
    for (int64_t p0 = first; p0 < last; p0 += kBlock) {
      const int64_t count = locate_block<D>(x, p0, n, lv, cb);
#pragma omp simd
      for (int64_t b = 0; b < count; ++b) {
        float acc[F] = {};
#pragma GCC unroll 16
        for (int k = 0; k < CornerBlock<D>::C; ++k) {
#pragma GCC unroll 16
          for (int f = 0; f < F; ++f) acc[f] += cb.w[k][b] * tl[cb.row[k][b] * F + f];
        }
#pragma GCC unroll 16
        for (int f = 0; f < F; ++f) ol[f * n + p0 + b] = acc[f];
      }
    }
  }
}

// grad_table[row_k] += w_k g and grad_x[p, i] += R_l sum_k <g, table[row_k]> d w_k / d frac_i, with
// g = grad_out[p, l*F : (l+1)*F] (strides sp, sc). grad_x is accumulated in one [N, D] buffer per
// thread (gx_parts [threads, N, D]) and summed afterwards. grad_table arrives uninitialised: the thread
// owning a level zeroes that level's rows first (no separate pass, and the rows are then in cache).
template <int D, int F>
void backward_impl(const float* __restrict__ x, const float* __restrict__ table,
                   const float* __restrict__ grad_out, int64_t sp, int64_t sc, float* __restrict__ grad_table,
                   float* __restrict__ gx_parts, int64_t n, const std::vector<Level>& levels) {
  const int64_t n_levels = static_cast<int64_t>(levels.size());
#pragma omp parallel
  {
    float* gx = gx_parts ? gx_parts + static_cast<int64_t>(omp_get_thread_num()) * n * D : nullptr;
    CornerBlock<D> cb;
    float frac[D];
    float dw[1 << D][D];
#pragma omp for schedule(dynamic, 1)
    for (int64_t l = 0; l < n_levels; ++l) {
      const Level& lv = levels[l];
      const float* tl = table + lv.offset * F;
      float* gl_table = grad_table ? grad_table + lv.offset * F : nullptr;
      if (gl_table) std::memset(gl_table, 0, sizeof(float) * lv.rows * F);
      for (int64_t p0 = 0; p0 < n; p0 += kBlock) {
        const int64_t count = locate_block<D>(x, p0, n, lv, cb);
        for (int64_t b = 0; b < count; ++b) {
          const int64_t p = p0 + b;
          float g[F];
          bool zero = true;
          for (int f = 0; f < F; ++f) {
            g[f] = grad_out[p * sp + (l * F + f) * sc];
            zero &= g[f] == 0.0f;
          }
          if (zero) continue;
          if (gl_table) {
            for (int k = 0; k < CornerBlock<D>::C; ++k) {
              float* dst = gl_table + cb.row[k][b] * F;
              for (int f = 0; f < F; ++f) dst[f] += cb.w[k][b] * g[f];
            }
          }
          if (gx) {
            frac_of<D>(cb, b, frac);
            weight_grads<D>(frac, dw);
            float gl[D] = {};
            for (int k = 0; k < CornerBlock<D>::C; ++k) {
              const float* feat = tl + cb.row[k][b] * F;
              float s = 0.0f;
              for (int f = 0; f < F; ++f) s += g[f] * feat[f];
              for (int i = 0; i < D; ++i) gl[i] += s * dw[k][i];
            }
            for (int i = 0; i < D; ++i) gx[p * D + i] += lv.res * gl[i];
          }
        }
      }
    }
  }
}

// Second-order terms driven by ggx, the gradient wrt the grad_x output of `backward`:
//   grad_g[p, l*F + f] = R_l sum_k table[row_k, f] a_k,  a_k = sum_i ggx[p, i] d w_k / d frac_i
//   grad_table[row_k, f] += R_l a_k g[p, l*F + f]
//   grad_x[p, j] += R_l^2 sum_k <g, table[row_k]> sum_i ggx[p, i] d^2 w_k / d frac_i d frac_j
template <int D, int F>
void double_backward_impl(const float* __restrict__ x, const float* __restrict__ table,
                          const float* __restrict__ grad_out, int64_t sp, int64_t sc,
                          const float* __restrict__ ggx, float* __restrict__ grad_g,
                          float* __restrict__ grad_table, float* __restrict__ gx_parts, int64_t n,
                          const std::vector<Level>& levels) {
  const int64_t n_levels = static_cast<int64_t>(levels.size());
#pragma omp parallel
  {
    float* gx = gx_parts ? gx_parts + static_cast<int64_t>(omp_get_thread_num()) * n * D : nullptr;
    CornerBlock<D> cb;
    float frac[D];
    float dw[1 << D][D];
    float hw[1 << D][D][D];
#pragma omp for schedule(dynamic, 1)
    for (int64_t l = 0; l < n_levels; ++l) {
      const Level& lv = levels[l];
      const float* tl = table + lv.offset * F;
      float* gl_table = grad_table ? grad_table + lv.offset * F : nullptr;
      if (gl_table) std::memset(gl_table, 0, sizeof(float) * lv.rows * F);
      for (int64_t p0 = 0; p0 < n; p0 += kBlock) {
        const int64_t count = locate_block<D>(x, p0, n, lv, cb);
        for (int64_t b = 0; b < count; ++b) {
          const int64_t p = p0 + b;
          const float* gg = ggx + p * D;
          float g[F];
          for (int f = 0; f < F; ++f) g[f] = grad_out[p * sp + (l * F + f) * sc];
          frac_of<D>(cb, b, frac);
          weight_grads<D>(frac, dw);
          float acc_g[F] = {};
          float gl[D] = {};
          if (gx) weight_hessians<D>(frac, hw);
          for (int k = 0; k < CornerBlock<D>::C; ++k) {
            const float* feat = tl + cb.row[k][b] * F;
            float a = 0.0f;
            for (int i = 0; i < D; ++i) a += gg[i] * dw[k][i];
            a *= lv.res;
            for (int f = 0; f < F; ++f) acc_g[f] += a * feat[f];
            if (gl_table) {
              float* dst = gl_table + cb.row[k][b] * F;
              for (int f = 0; f < F; ++f) dst[f] += a * g[f];
            }
            if (gx) {
              float s = 0.0f;
              for (int f = 0; f < F; ++f) s += g[f] * feat[f];
              for (int j = 0; j < D; ++j) {
                float h = 0.0f;
                for (int i = 0; i < D; ++i) h += gg[i] * hw[k][i][j];
                gl[j] += s * h;
              }
            }
          }
          if (grad_g) {
            for (int f = 0; f < F; ++f) grad_g[p * n_levels * F + l * F + f] = acc_g[f];
          }
          if (gx) {
            for (int j = 0; j < D; ++j) gx[p * D + j] += lv.res * lv.res * gl[j];
          }
        }
      }
    }
  }
}

void check_inputs(const torch::Tensor& x, const torch::Tensor& table) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(), "hashgrid kernel needs CPU tensors");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && table.scalar_type() == torch::kFloat32,
              "hashgrid kernel needs float32 tensors");
  TORCH_CHECK(x.dim() == 2 && table.dim() == 2, "hashgrid kernel needs x [N, D] and table [T, F]");
}

// Dispatch on D in {1, 2, 3, 4} and F in {1, 2, 4, 8}.
template <typename Fn>
void dispatch(int64_t d, int64_t f, Fn&& fn) {
#define OMNIFIELD_CASE_F(DV)                                                               \
  switch (f) {                                                                             \
    case 1: fn(std::integral_constant<int, DV>{}, std::integral_constant<int, 1>{}); return; \
    case 2: fn(std::integral_constant<int, DV>{}, std::integral_constant<int, 2>{}); return; \
    case 4: fn(std::integral_constant<int, DV>{}, std::integral_constant<int, 4>{}); return; \
    case 8: fn(std::integral_constant<int, DV>{}, std::integral_constant<int, 8>{}); return; \
    default: break;                                                                        \
  }
  switch (d) {
    case 1: OMNIFIELD_CASE_F(1) break;
    case 2: OMNIFIELD_CASE_F(2) break;
    case 3: OMNIFIELD_CASE_F(3) break;
    case 4: OMNIFIELD_CASE_F(4) break;
    default: break;
  }
#undef OMNIFIELD_CASE_F
  TORCH_CHECK(false, "hashgrid kernel supports D in {1,2,3,4} and F in {1,2,4,8}, got D=", d, " F=", f);
}

torch::Tensor forward(torch::Tensor x, torch::Tensor table, torch::Tensor resolutions,
                      torch::Tensor offsets, torch::Tensor sizes, torch::Tensor dense) {
  check_inputs(x, table);
  x = x.contiguous();
  table = table.contiguous();
  const auto levels = make_levels(resolutions, offsets, sizes, dense, table.size(0), table.size(1));
  const int64_t n = x.size(0), f = table.size(1);
  auto out = torch::empty({static_cast<int64_t>(levels.size()) * f, n}, x.options());
  dispatch(x.size(1), f, [&](auto dc, auto fc) {
    forward_impl<decltype(dc)::value, decltype(fc)::value>(x.data_ptr<float>(), table.data_ptr<float>(),
                                                          out.data_ptr<float>(), n, levels);
  });
  return out.t();
}

// Returns (grad_x or undefined, grad_table or undefined); grad_out may have any strides.
std::vector<torch::Tensor> backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor table,
                                    torch::Tensor resolutions, torch::Tensor offsets, torch::Tensor sizes,
                                    torch::Tensor dense, bool need_x, bool need_table) {
  check_inputs(x, table);
  x = x.contiguous();
  table = table.contiguous();
  grad_out = grad_out.to(torch::kFloat32);
  const auto levels = make_levels(resolutions, offsets, sizes, dense, table.size(0), table.size(1));
  const int64_t n = x.size(0), d = x.size(1), f = table.size(1);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == n &&
                  grad_out.size(1) == static_cast<int64_t>(levels.size()) * f,
              "hashgrid backward: grad_out has the wrong shape");
  torch::Tensor grad_x, grad_table, gx_parts;
  if (need_table) grad_table = torch::empty_like(table);
  if (need_x) gx_parts = torch::zeros({omp_get_max_threads(), n, d}, x.options());
  dispatch(d, f, [&](auto dc, auto fc) {
    backward_impl<decltype(dc)::value, decltype(fc)::value>(
        x.data_ptr<float>(), table.data_ptr<float>(), grad_out.data_ptr<float>(), grad_out.stride(0),
        grad_out.stride(1), need_table ? grad_table.data_ptr<float>() : nullptr,
        need_x ? gx_parts.data_ptr<float>() : nullptr, n, levels);
  });
  if (need_x) grad_x = gx_parts.sum(0);
  return {grad_x, grad_table};
}

// Returns (grad wrt grad_out, grad wrt x, grad wrt table) of <ggx, grad_x(grad_out, x, table)>.
std::vector<torch::Tensor> double_backward(torch::Tensor ggx, torch::Tensor grad_out, torch::Tensor x,
                                           torch::Tensor table, torch::Tensor resolutions, torch::Tensor offsets,
                                           torch::Tensor sizes, torch::Tensor dense, bool need_g, bool need_x,
                                           bool need_table) {
  check_inputs(x, table);
  x = x.contiguous();
  table = table.contiguous();
  ggx = ggx.to(torch::kFloat32).contiguous();
  grad_out = grad_out.to(torch::kFloat32);
  const auto levels = make_levels(resolutions, offsets, sizes, dense, table.size(0), table.size(1));
  const int64_t n = x.size(0), d = x.size(1), f = table.size(1);
  TORCH_CHECK(ggx.sizes() == x.sizes(), "hashgrid double backward: ggx must be shaped like x");
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == n &&
                  grad_out.size(1) == static_cast<int64_t>(levels.size()) * f,
              "hashgrid double backward: grad_out has the wrong shape");
  torch::Tensor grad_g, grad_x, grad_table, gx_parts;
  if (need_g) grad_g = torch::empty({n, static_cast<int64_t>(levels.size()) * f}, x.options());
  if (need_table) grad_table = torch::empty_like(table);
  if (need_x) gx_parts = torch::zeros({omp_get_max_threads(), n, d}, x.options());
  dispatch(d, f, [&](auto dc, auto fc) {
    double_backward_impl<decltype(dc)::value, decltype(fc)::value>(
        x.data_ptr<float>(), table.data_ptr<float>(), grad_out.data_ptr<float>(), grad_out.stride(0),
        grad_out.stride(1), ggx.data_ptr<float>(), need_g ? grad_g.data_ptr<float>() : nullptr,
        need_table ? grad_table.data_ptr<float>() : nullptr, need_x ? gx_parts.data_ptr<float>() : nullptr, n,
        levels);
  });
  if (need_x) grad_x = gx_parts.sum(0);
  return {grad_g, grad_x, grad_table};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-resolution hash encoding (CPU, OpenMP)";
  m.def("forward", &forward, "x [N, D], table [T, F] -> [N, L*F]");
  m.def("backward", &backward, "grad wrt x and table");
  m.def("double_backward", &double_backward, "second-order terms of the x gradient");
}
