// Fused ReLU MLP on the CPU (OpenMP): forward and backward of
//   h_0 = x, h_{l+1} = relu(m_l(h_l W_l^T + b_l)) (hidden layers), y = h_L W_L^T + b_L (output layer),
// for hidden widths that are a multiple of 16 up to 128. m_l is the identity, except for the first M
// hidden layers when a per-row modulation `mod [N, 2, M, W]` is given (CAM, coordinate-aware modulation):
//   m_l(a) = (1 + mod[:, 0, l]) * norm(a) + mod[:, 1, l],
// with norm a parameter-free layer norm over the W features (eps 1e-5, biased variance) or the identity.
//
// Twin of omnifield/fields/mlp.py::_mlp_layers (activation "relu", with biases); output activations are
// applied by the caller. The row dimension is cut into blocks of 64 rows; for each block every layer runs
// back to back, so a block's activations stay in cache, and bias, ReLU, its mask and the gradient
// reductions are fused into the matrix products instead of separate passes over memory.
//
// Two register-blocked primitives do all the arithmetic, both vectorised over a run of 16*V columns
// (GCC/Clang vector extensions, one 512-bit or two 256-bit registers per 16 floats):
//   rows_times:   out[r, :] = init + sum_j A[r, j] M[j, :]           (4 rows at a time)
//   outer_accum:  G[o, :]  += sum_r B[r, o] A[r, :]                    (4 outputs o at a time)
// Column counts that are not a multiple of 16 (the input and output widths) are zero-padded.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <vector>

namespace {

typedef float v16 __attribute__((vector_size(64)));

inline v16 load16(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof(v16));
  return v;
}
inline void store16(float* p, v16 v) { std::memcpy(p, &v, sizeof(v16)); }

constexpr int64_t kRowBlock = 64;

inline int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

// out[r, 0:16V] = init[0:16V] (or 0) + sum_{j<J} A[r*lda + j] * M[j*ldm + 0:16V], r < rows.
template <int V>
void rows_times(const float* __restrict__ A, int64_t lda, int64_t J, const float* __restrict__ M, int64_t ldm,
                const float* __restrict__ init, float* __restrict__ out, int64_t ldo, int64_t rows) {
  v16 base[V];
  for (int v = 0; v < V; ++v) base[v] = init ? load16(init + 16 * v) : v16{};
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    v16 acc[4][V];
    for (int i = 0; i < 4; ++i)
      for (int v = 0; v < V; ++v) acc[i][v] = base[v];
    const float* a = A + r * lda;
    for (int64_t j = 0; j < J; ++j) {
      const float* m = M + j * ldm;
      const float a0 = a[j], a1 = a[lda + j], a2 = a[2 * lda + j], a3 = a[3 * lda + j];
      for (int v = 0; v < V; ++v) {
        const v16 mv = load16(m + 16 * v);
        acc[0][v] += a0 * mv;
        acc[1][v] += a1 * mv;
        acc[2][v] += a2 * mv;
        acc[3][v] += a3 * mv;
      }
    }
    for (int i = 0; i < 4; ++i)
      for (int v = 0; v < V; ++v) store16(out + (r + i) * ldo + 16 * v, acc[i][v]);
  }
  for (; r < rows; ++r) {
    v16 acc[V];
    for (int v = 0; v < V; ++v) acc[v] = base[v];
    for (int64_t j = 0; j < J; ++j) {
      const float aj = A[r * lda + j];
      for (int v = 0; v < V; ++v) acc[v] += aj * load16(M + j * ldm + 16 * v);
    }
    for (int v = 0; v < V; ++v) store16(out + r * ldo + 16 * v, acc[v]);
  }
}

// G[o*ldg + 0:16V] += sum_{r<rows} B[r*ldb + o] * A[r*lda + 0:16V] for o < n_o.
template <int V>
void outer_accum(const float* __restrict__ B, int64_t ldb, int64_t n_o, const float* __restrict__ A, int64_t lda,
                 int64_t rows, float* __restrict__ G, int64_t ldg) {
  int64_t o = 0;
  for (; o + 4 <= n_o; o += 4) {
    v16 acc[4][V] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* b = B + r * ldb + o;
      for (int v = 0; v < V; ++v) {
        const v16 av = load16(A + r * lda + 16 * v);
        acc[0][v] += b[0] * av;
        acc[1][v] += b[1] * av;
        acc[2][v] += b[2] * av;
        acc[3][v] += b[3] * av;
      }
    }
    for (int i = 0; i < 4; ++i)
      for (int v = 0; v < V; ++v) {
        float* g = G + (o + i) * ldg + 16 * v;
        store16(g, load16(g) + acc[i][v]);
      }
  }
  for (; o < n_o; ++o) {
    v16 acc[V] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int v = 0; v < V; ++v) acc[v] += B[r * ldb + o] * load16(A + r * lda + 16 * v);
    for (int v = 0; v < V; ++v) {
      float* g = G + o * ldg + 16 * v;
      store16(g, load16(g) + acc[v]);
    }
  }
}

// Runtime column count (a multiple of 16, at most 128) -> template instance.
template <template <int> class Op, typename... Args>
void dispatch(int64_t columns, Args... args) {
  switch (columns / 16) {
    case 1: Op<1>::run(args...); break;
    case 2: Op<2>::run(args...); break;
    case 3: Op<3>::run(args...); break;
    case 4: Op<4>::run(args...); break;
    case 5: Op<5>::run(args...); break;
    case 6: Op<6>::run(args...); break;
    case 7: Op<7>::run(args...); break;
    case 8: Op<8>::run(args...); break;
    default: TORCH_CHECK(false, "native MLP: column count ", columns, " is not a multiple of 16 up to 128");
  }
}
template <int V>
struct RowsTimes {
  template <typename... Args>
  static void run(Args... args) { rows_times<V>(args...); }
};
template <int V>
struct OuterAccum {
  template <typename... Args>
  static void run(Args... args) { outer_accum<V>(args...); }
};

inline void relu_inplace(float* __restrict__ h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = h[i] > 0.0f ? h[i] : 0.0f;
}

// out[r, c] = grad[r, c] where the ReLU output act[r, c] > 0, else 0 (branch-free, vectorised).
inline void relu_mask(const float* __restrict__ act, const float* __restrict__ grad, int64_t ld_grad,
                      float* __restrict__ out, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c)
      out[r * width + c] = act[r * width + c] > 0.0f ? grad[r * ld_grad + c] : 0.0f;
}

// bias_grad[o] += sum_r grad[r, o]
inline void sum_rows(const float* __restrict__ grad, int64_t rows, int64_t cols, float* __restrict__ bias_grad) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) bias_grad[c] += grad[r * cols + c];
}

// One modulated row block of hidden layer l, in place: h [rows, W] (the linear output) becomes the
// modulated pre-activation; z [rows, W] receives the normalised input of the modulation and rstd [rows]
// the layer norm's 1 / std (1 without the norm). mod points at the block's first row of [N, 2, M, W].
void modulate(float* __restrict__ h, int64_t rows, int64_t width, const float* __restrict__ mod, int64_t n_mod,
              int64_t l, bool layer_norm, float* __restrict__ z, float* __restrict__ rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    float* hr = h + r * width;
    float* zr = z + r * width;
    const float* scale = mod + (r * 2 * n_mod + l) * width;
    const float* shift = mod + (r * 2 * n_mod + n_mod + l) * width;
    float mean = 0.0f, rs = 1.0f;
    if (layer_norm) {
      for (int64_t c = 0; c < width; ++c) mean += hr[c];
      mean /= static_cast<float>(width);
      float var = 0.0f;
      for (int64_t c = 0; c < width; ++c) var += (hr[c] - mean) * (hr[c] - mean);
      rs = 1.0f / std::sqrt(var / static_cast<float>(width) + 1e-5f);
    }
    for (int64_t c = 0; c < width; ++c) {
      zr[c] = (hr[c] - mean) * rs;
      hr[c] = (1.0f + scale[c]) * zr[c] + shift[c];
    }
    rstd[r] = rs;
  }
}

// Backward of `modulate` for one row block, in place: g [rows, W] holds the gradient wrt the modulated
// pre-activation and becomes the gradient wrt the linear output; the modulation's gradient rows are
// written to grad_mod (same layout as mod).
void demodulate(float* __restrict__ g, int64_t rows, int64_t width, const float* __restrict__ mod, int64_t n_mod,
                int64_t l, bool layer_norm, const float* __restrict__ z, const float* __restrict__ rstd,
                float* __restrict__ grad_mod) {
  for (int64_t r = 0; r < rows; ++r) {
    float* gr = g + r * width;
    const float* zr = z + r * width;
    const float* scale = mod + (r * 2 * n_mod + l) * width;
    float* grad_scale = grad_mod + (r * 2 * n_mod + l) * width;
    float* grad_shift = grad_mod + (r * 2 * n_mod + n_mod + l) * width;
    float mean_gz = 0.0f, mean_gz_z = 0.0f;
    for (int64_t c = 0; c < width; ++c) {
      grad_shift[c] = gr[c];
      grad_scale[c] = gr[c] * zr[c];
      gr[c] *= 1.0f + scale[c];  // now the gradient wrt z
      mean_gz += gr[c];
      mean_gz_z += gr[c] * zr[c];
    }
    if (!layer_norm) continue;
    mean_gz /= static_cast<float>(width);
    mean_gz_z /= static_cast<float>(width);
    for (int64_t c = 0; c < width; ++c) gr[c] = rstd[r] * (gr[c] - mean_gz - zr[c] * mean_gz_z);
  }
}

// The number of modulated layers M of `mod` ([N, 2, M, W], or empty for none), checked against the MLP.
int64_t modulated_layers(const torch::Tensor& mod, int64_t n, int64_t n_hidden, int64_t width) {
  if (mod.numel() == 0) return 0;
  TORCH_CHECK(mod.dim() == 4 && mod.scalar_type() == torch::kFloat32 && mod.is_contiguous() && mod.size(0) == n &&
                  mod.size(1) == 2 && mod.size(2) <= n_hidden && mod.size(3) == width,
              "native MLP: modulation must be contiguous float32 [N, 2, M <= hidden layers, width]");
  return mod.size(2);
}

// Layer l's weight [out, in] zero-padded to [out, pad16(in)] (backward: gradient wrt its input) and its
// transpose [in, pad16(out)] (forward); the bias padded to pad16(out).
struct Layer {
  int64_t n_in, n_out, in_pad, out_pad;
  std::vector<float> w_pad, wt_pad, b_pad;
};

std::vector<Layer> make_layers(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& biases) {
  TORCH_CHECK(weights.size() == biases.size() && weights.size() >= 2, "native MLP: need >= 1 hidden layer");
  std::vector<Layer> layers;
  for (size_t l = 0; l < weights.size(); ++l) {
    const auto w = weights[l].contiguous();
    const auto b = biases[l].contiguous();
    TORCH_CHECK(w.dim() == 2 && w.scalar_type() == torch::kFloat32 && b.numel() == w.size(0),
                "native MLP: weight ", l, " must be float32 [out, in] with a matching bias");
    Layer L;
    L.n_out = w.size(0), L.n_in = w.size(1), L.in_pad = pad16(L.n_in), L.out_pad = pad16(L.n_out);
    TORCH_CHECK(l == 0 || L.n_in == layers.back().n_out, "native MLP: layer sizes do not chain");
    TORCH_CHECK(l + 1 == weights.size() || (L.n_out % 16 == 0 && L.n_out <= 128 && L.n_out == weights[0].size(0)),
                "native MLP: hidden layers must share one width, a multiple of 16 up to 128");
    const float* pw = w.data_ptr<float>();
    L.w_pad.assign(L.n_out * L.in_pad, 0.0f);
    L.wt_pad.assign(L.n_in * L.out_pad, 0.0f);
    L.b_pad.assign(L.out_pad, 0.0f);
    for (int64_t o = 0; o < L.n_out; ++o) {
      for (int64_t i = 0; i < L.n_in; ++i) {
        L.w_pad[o * L.in_pad + i] = pw[o * L.n_in + i];
        L.wt_pad[i * L.out_pad + o] = pw[o * L.n_in + i];
      }
      L.b_pad[o] = b.data_ptr<float>()[o];
    }
    layers.push_back(std::move(L));
  }
  TORCH_CHECK(layers.back().out_pad <= 128 && layers.front().in_pad <= 128,
              "native MLP: input and output widths up to 128");
  return layers;
}

// x [N, n_in], modulation [N, 2, M, W] or empty -> (y [N, n_out], hidden activations after ReLU
// [n_hidden, N, W], normalised inputs of the modulations [M, N, W], their 1 / std [M, N]).
std::vector<torch::Tensor> forward(torch::Tensor x, std::vector<torch::Tensor> weights, std::vector<torch::Tensor> biases,
                                   torch::Tensor modulation, bool layer_norm) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "native MLP: x must be float32 [N, n_in]");
  x = x.contiguous();
  const auto layers = make_layers(weights, biases);
  TORCH_CHECK(x.size(1) == layers.front().n_in, "native MLP: x has ", x.size(1), " columns, the MLP takes ",
              layers.front().n_in);
  const int64_t n = x.size(0), n_hidden = static_cast<int64_t>(layers.size()) - 1;
  const Layer& last = layers.back();
  const int64_t width = layers[0].n_out;
  auto hidden = torch::empty({n_hidden, n, width}, x.options());
  auto y = torch::empty({n, last.n_out}, x.options());
  const int64_t n_mod = modulated_layers(modulation, n, n_hidden, width);
  auto normalized = torch::empty({n_mod, n, width}, x.options());
  auto rstd = torch::empty({n_mod, n}, x.options());
  const float* px = x.data_ptr<float>();
  const float* pmod = n_mod ? modulation.data_ptr<float>() : nullptr;
  float* py = y.data_ptr<float>();
#pragma omp parallel
  {
    std::vector<float> out_buf(kRowBlock * last.out_pad);
#pragma omp for schedule(static)
    for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, n - r0);
      const float* a = px + r0 * layers[0].n_in;
      int64_t lda = layers[0].n_in;
      for (int64_t l = 0; l < n_hidden; ++l) {
        const Layer& L = layers[l];
        float* h = hidden.data_ptr<float>() + (l * n + r0) * width;
        dispatch<RowsTimes>(L.n_out, a, lda, L.n_in, L.wt_pad.data(), L.out_pad, L.b_pad.data(), h, L.n_out, rows);
        if (l < n_mod)
          modulate(h, rows, width, pmod + r0 * 2 * n_mod * width, n_mod, l, layer_norm,
                   normalized.data_ptr<float>() + (l * n + r0) * width, rstd.data_ptr<float>() + l * n + r0);
        relu_inplace(h, rows * L.n_out);
        a = h, lda = L.n_out;
      }
      dispatch<RowsTimes>(last.out_pad, a, lda, last.n_in, last.wt_pad.data(), last.out_pad, last.b_pad.data(),
                          out_buf.data(), last.out_pad, rows);
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(py + (r0 + r) * last.n_out, out_buf.data() + r * last.out_pad, sizeof(float) * last.n_out);
    }
  }
  return {y, hidden, normalized, rstd};
}

// Gradients wrt x (when need_x), the modulation (empty without one), every weight and every bias, given
// grad_y [N, n_out] and what the forward returned. Threads accumulate weight/bias gradients in their own
// buffers, summed at the end; the rows of the modulation's gradient belong to the thread of their block.
std::vector<torch::Tensor> backward(torch::Tensor grad_y, torch::Tensor x, torch::Tensor hidden,
                                    std::vector<torch::Tensor> weights, std::vector<torch::Tensor> biases,
                                    bool need_x, torch::Tensor modulation, bool layer_norm, torch::Tensor normalized,
                                    torch::Tensor rstd) {
  grad_y = grad_y.contiguous(), x = x.contiguous(), hidden = hidden.contiguous();
  const auto layers = make_layers(weights, biases);
  const int64_t n = x.size(0), n_layers = static_cast<int64_t>(layers.size());
  const int64_t width = layers[0].n_out, in_pad = layers[0].in_pad;
  const int64_t n_mod = modulated_layers(modulation, n, n_layers - 1, width);
  TORCH_CHECK(n_mod == 0 || (normalized.is_contiguous() && normalized.size(0) == n_mod && rstd.is_contiguous() &&
                             rstd.size(0) == n_mod),
              "native MLP: the forward's normalised inputs do not match the modulation");
  auto grad_mod = torch::empty_like(modulation);
  const float* pmod = n_mod ? modulation.data_ptr<float>() : nullptr;
  const int threads = omp_get_max_threads();
  std::vector<std::vector<float>> gw(threads * n_layers), gb(threads * n_layers);
  auto grad_x = need_x ? torch::empty_like(x) : torch::Tensor();
  const float* px = x.data_ptr<float>();
  const float* ph = hidden.data_ptr<float>();
  const float* pgy = grad_y.data_ptr<float>();
#pragma omp parallel
  {
    const int t = omp_get_thread_num();
    for (int64_t l = 0; l < n_layers; ++l) {
      gw[t * n_layers + l].assign(layers[l].n_out * layers[l].in_pad, 0.0f);
      gb[t * n_layers + l].assign(layers[l].n_out, 0.0f);
    }
    std::vector<float> x_pad(kRowBlock * in_pad, 0.0f), g(kRowBlock * 128), g_next(kRowBlock * 128);
#pragma omp for schedule(static)
    for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, n - r0);
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(x_pad.data() + r * in_pad, px + (r0 + r) * layers[0].n_in, sizeof(float) * layers[0].n_in);
      // g = grad wrt the output of layer l ([rows, n_out_l], leading dimension n_out_l)
      std::memcpy(g.data(), pgy + r0 * layers.back().n_out, sizeof(float) * rows * layers.back().n_out);
      for (int64_t l = n_layers - 1; l >= 0; --l) {
        const Layer& L = layers[l];
        if (l < n_mod)  // g: gradient wrt the modulated pre-activation -> wrt the linear output
          demodulate(g.data(), rows, width, pmod + r0 * 2 * n_mod * width, n_mod, l, layer_norm,
                     normalized.data_ptr<float>() + (l * n + r0) * width, rstd.data_ptr<float>() + l * n + r0,
                     grad_mod.data_ptr<float>() + r0 * 2 * n_mod * width);
        const float* a = l > 0 ? ph + ((l - 1) * n + r0) * width : x_pad.data();  // layer input
        const int64_t lda = l > 0 ? width : in_pad;
        float* gwl = gw[t * n_layers + l].data();
        float* gbl = gb[t * n_layers + l].data();
        dispatch<OuterAccum>(L.in_pad, g.data(), L.n_out, L.n_out, a, lda, rows, gwl, L.in_pad);
        sum_rows(g.data(), rows, L.n_out, gbl);
        if (l == 0 && !need_x) break;
        dispatch<RowsTimes>(L.in_pad, g.data(), L.n_out, L.n_out, L.w_pad.data(), L.in_pad, nullptr, g_next.data(),
                            L.in_pad, rows);
        if (l > 0) {  // through the ReLU of the layer below: its output is a, zero where it was clipped
          relu_mask(a, g_next.data(), L.in_pad, g.data(), rows, width);
        } else {
          float* gx = grad_x.data_ptr<float>() + r0 * L.n_in;
          for (int64_t r = 0; r < rows; ++r)
            std::memcpy(gx + r * L.n_in, g_next.data() + r * L.in_pad, sizeof(float) * L.n_in);
        }
      }
    }
  }
  std::vector<torch::Tensor> out{need_x ? grad_x : torch::Tensor(), grad_mod};
  for (int64_t l = 0; l < n_layers; ++l) {
    const Layer& L = layers[l];
    auto w_grad = torch::zeros({L.n_out, L.n_in}, x.options());
    auto b_grad = torch::zeros({L.n_out}, x.options());
    float* pw = w_grad.data_ptr<float>();
    float* pb = b_grad.data_ptr<float>();
    for (int t = 0; t < threads; ++t) {
      const auto& src = gw[t * n_layers + l];
      if (src.empty()) continue;
      for (int64_t o = 0; o < L.n_out; ++o) {
        for (int64_t i = 0; i < L.n_in; ++i) pw[o * L.n_in + i] += src[o * L.in_pad + i];
        pb[o] += gb[t * n_layers + l][o];
      }
    }
    out.push_back(w_grad);
    out.push_back(b_grad);
  }
  return out;
}

// One modulated layer alone (for MLPs that run layer by layer in torch): pre [N, W] (a linear output) ->
// (the modulated pre-activation [N, W], the normalised input [N, W], 1 / std [N]) for layer l of mod.
std::vector<torch::Tensor> modulation_forward(torch::Tensor pre, torch::Tensor modulation, int64_t l, bool layer_norm) {
  TORCH_CHECK(pre.dim() == 2 && pre.scalar_type() == torch::kFloat32, "native modulation: pre must be float32 [N, W]");
  pre = pre.contiguous();
  const int64_t n = pre.size(0), width = pre.size(1);
  const int64_t n_mod = modulated_layers(modulation, n, std::numeric_limits<int64_t>::max(), width);
  TORCH_CHECK(n == 0 || l < n_mod, "native modulation: layer ", l, " is not modulated");
  auto out = pre.clone();
  auto z = torch::empty_like(pre);
  auto rstd = torch::empty({n}, pre.options());
#pragma omp parallel for schedule(static)
  for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, n - r0);
    modulate(out.data_ptr<float>() + r0 * width, rows, width, modulation.data_ptr<float>() + r0 * 2 * n_mod * width,
             n_mod, l, layer_norm, z.data_ptr<float>() + r0 * width, rstd.data_ptr<float>() + r0);
  }
  return {out, z, rstd};
}

// Backward of modulation_forward: (grad wrt pre [N, W], grad wrt mod [N, 2, M, W], zero outside layer l).
std::vector<torch::Tensor> modulation_backward(torch::Tensor grad_out, torch::Tensor modulation, torch::Tensor z,
                                               torch::Tensor rstd, int64_t l, bool layer_norm) {
  auto grad_pre = grad_out.contiguous().clone();
  const int64_t n = grad_pre.size(0), width = grad_pre.size(1);
  const int64_t n_mod = modulated_layers(modulation, n, std::numeric_limits<int64_t>::max(), width);
  TORCH_CHECK(z.is_contiguous() && z.sizes() == grad_pre.sizes() && rstd.is_contiguous() && rstd.numel() == n,
              "native modulation: the forward's normalised input does not match");
  auto grad_mod = n_mod > 1 ? torch::zeros_like(modulation) : torch::empty_like(modulation);
#pragma omp parallel for schedule(static)
  for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, n - r0);
    demodulate(grad_pre.data_ptr<float>() + r0 * width, rows, width,
               modulation.data_ptr<float>() + r0 * 2 * n_mod * width, n_mod, l, layer_norm,
               z.data_ptr<float>() + r0 * width, rstd.data_ptr<float>() + r0,
               grad_mod.data_ptr<float>() + r0 * 2 * n_mod * width);
  }
  return {grad_pre, grad_mod};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused ReLU MLP forward: (y, hidden activations, normalised inputs, 1 / std)");
  m.def("backward", &backward, "fused ReLU MLP backward: (grad_x or None, grad_modulation, grad_w0, grad_b0, ...)");
  m.def("modulation_forward", &modulation_forward, "one modulated layer: (out, normalised input, 1 / std)");
  m.def("modulation_backward", &modulation_backward, "its backward: (grad wrt pre, grad wrt the modulation)");
}
