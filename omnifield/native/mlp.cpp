// Fused ReLU MLP on the CPU (OpenMP): forward and backward of
//   h_0 = x, h_{l+1} = relu(h_l W_l^T + b_l) (hidden layers), y = h_L W_L^T + b_L (output layer),
// for hidden widths that are a multiple of 16 up to 128.
//
// Twin of omnifield/fields/mlp.py::MLP (activation "relu", with biases); output activations are applied
// by the caller. The row dimension is cut into blocks of 64 rows; for each block every layer runs
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

// x [N, n_in] -> (y [N, n_out], hidden activations after ReLU [n_hidden, N, width]).
std::vector<torch::Tensor> forward(torch::Tensor x, std::vector<torch::Tensor> weights, std::vector<torch::Tensor> biases) {
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
  const float* px = x.data_ptr<float>();
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
        relu_inplace(h, rows * L.n_out);
        a = h, lda = L.n_out;
      }
      dispatch<RowsTimes>(last.out_pad, a, lda, last.n_in, last.wt_pad.data(), last.out_pad, last.b_pad.data(),
                          out_buf.data(), last.out_pad, rows);
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(py + (r0 + r) * last.n_out, out_buf.data() + r * last.out_pad, sizeof(float) * last.n_out);
    }
  }
  return {y, hidden};
}

// Gradients wrt x (when need_x), every weight and every bias, given grad_y [N, n_out] and what the
// forward returned. Threads accumulate weight/bias gradients in their own buffers, summed at the end.
std::vector<torch::Tensor> backward(torch::Tensor grad_y, torch::Tensor x, torch::Tensor hidden,
                                    std::vector<torch::Tensor> weights, std::vector<torch::Tensor> biases,
                                    bool need_x) {
  grad_y = grad_y.contiguous(), x = x.contiguous(), hidden = hidden.contiguous();
  const auto layers = make_layers(weights, biases);
  const int64_t n = x.size(0), n_layers = static_cast<int64_t>(layers.size());
  const int64_t width = layers[0].n_out, in_pad = layers[0].in_pad;
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
  std::vector<torch::Tensor> out{need_x ? grad_x : torch::Tensor()};
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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused ReLU MLP forward: (y, hidden activations)");
  m.def("backward", &backward, "fused ReLU MLP backward: (grad_x or None, grad_w0, grad_b0, ...)");
}
