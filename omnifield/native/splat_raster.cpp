// Tile-based Gaussian splatting rasterizer for CPU (forward and backward), OpenMP over tiles.
//
// Twin of omnifield/renderers/splat/rasterize.py::_rasterize_to_pixels (same binning rule, same
// blending, same early termination). Binning: visible Gaussians are stably sorted by depth, then
// appended to the lists of the tiles their rectangle covers, so every tile list is front to back.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace {

constexpr float kAlphaMax = 0.999f;
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kTMin = 1e-4f;

struct Bins {
  std::vector<int64_t> offsets;  // [T + 1]
  std::vector<int32_t> ids;      // [M]
};

void tile_rect(const float* m, int32_t r, int ts, int tx, int ty, int64_t lo[2], int64_t hi[2]) {
  const int64_t limits[2] = {tx, ty};
  for (int k = 0; k < 2; ++k) {
    int64_t a = (int64_t)std::floor((m[k] - (float)r) / (float)ts);
    int64_t b = (int64_t)std::ceil((m[k] + (float)r) / (float)ts);
    lo[k] = std::min(std::max<int64_t>(a, 0), limits[k]);
    hi[k] = std::min(std::max<int64_t>(b, 0), limits[k]);
  }
}

Bins bin_gaussians(const float* means2d, const int32_t* radii, const float* depths, int64_t n, int width,
                   int height, int ts) {
  const int tx = (width + ts - 1) / ts, ty = (height + ts - 1) / ts;
  std::vector<int32_t> order;
  order.reserve(n);
  for (int64_t i = 0; i < n; ++i)
    if (radii[i] > 0) order.push_back((int32_t)i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return depths[a] < depths[b]; });
  Bins bins;
  bins.offsets.assign((size_t)tx * ty + 1, 0);
  int64_t lo[2], hi[2];
  for (int32_t g : order) {
    tile_rect(means2d + 2 * g, radii[g], ts, tx, ty, lo, hi);
    for (int64_t y = lo[1]; y < hi[1]; ++y)
      for (int64_t x = lo[0]; x < hi[0]; ++x) bins.offsets[y * tx + x + 1]++;
  }
  std::partial_sum(bins.offsets.begin(), bins.offsets.end(), bins.offsets.begin());
  bins.ids.resize(bins.offsets.back());
  std::vector<int64_t> cursor(bins.offsets.begin(), bins.offsets.end() - 1);
  for (int32_t g : order) {
    tile_rect(means2d + 2 * g, radii[g], ts, tx, ty, lo, hi);
    for (int64_t y = lo[1]; y < hi[1]; ++y)
      for (int64_t x = lo[0]; x < hi[0]; ++x) bins.ids[cursor[y * tx + x]++] = g;
  }
  return bins;
}

// Per-tile copy of the Gaussians it blends (structure of arrays, front to back).
struct TileGaussians {
  std::vector<float> mx, my, a, b, c, o, cut;  // cut: largest sigma with alpha >= 1/255
  void load(const int64_t* offsets, const int32_t* ids, int64_t t, const float* means2d, const float* conics,
            const float* opac) {
    const int64_t s = offsets[t], k = offsets[t + 1] - s;
    for (auto* v : {&mx, &my, &a, &b, &c, &o, &cut}) v->resize(k);
    for (int64_t i = 0; i < k; ++i) {
      const int32_t g = ids[s + i];
      mx[i] = means2d[2 * g];
      my[i] = means2d[2 * g + 1];
      a[i] = conics[3 * g];
      b[i] = conics[3 * g + 1];
      c[i] = conics[3 * g + 2];
      o[i] = opac[g];
      cut[i] = std::log(std::max(o[i], 1e-30f) / kAlphaMin);
    }
  }
};

}  // namespace

std::vector<torch::Tensor> splat_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                         torch::Tensor opacities, torch::Tensor depths, torch::Tensor radii,
                                         torch::Tensor background, int64_t width, int64_t height,
                                         int64_t tile_size) {
  const int64_t n = means2d.size(0), nc = colors.size(1);
  const int ts = (int)tile_size;
  const int tiles_x = (int)((width + ts - 1) / ts), tiles_y = (int)((height + ts - 1) / ts);
  Bins bins = bin_gaussians(means2d.data_ptr<float>(), radii.data_ptr<int32_t>(), depths.data_ptr<float>(), n,
                            (int)width, (int)height, ts);
  auto image = torch::empty({height, width, nc}, means2d.options());
  auto final_t = torch::empty({height, width}, means2d.options());
  auto last = torch::empty({height, width}, means2d.options().dtype(torch::kInt64));
  const float* m2 = means2d.data_ptr<float>();
  const float* co = conics.data_ptr<float>();
  const float* cl = colors.data_ptr<float>();
  const float* op = opacities.data_ptr<float>();
  const float* bg = background.data_ptr<float>();
  float* img = image.data_ptr<float>();
  float* ft = final_t.data_ptr<float>();
  int64_t* lst = last.data_ptr<int64_t>();
#pragma omp parallel
  {
    TileGaussians tg;
    std::vector<float> acc(nc);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < (int64_t)tiles_x * tiles_y; ++t) {
      tg.load(bins.offsets.data(), bins.ids.data(), t, m2, co, op);
      const int64_t s = bins.offsets[t], k = bins.offsets[t + 1] - s;
      const int64_t x0 = (t % tiles_x) * ts, y0 = (t / tiles_x) * ts;
      for (int64_t y = y0; y < std::min<int64_t>(y0 + ts, height); ++y) {
        for (int64_t x = x0; x < std::min<int64_t>(x0 + ts, width); ++x) {
          const float px = (float)x + 0.5f, py = (float)y + 0.5f;
          float T = 1.0f;
          int64_t end = s;
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t i = 0; i < k; ++i) {
            const float dx = tg.mx[i] - px, dy = tg.my[i] - py;
            const float sigma = 0.5f * (tg.a[i] * dx * dx + tg.c[i] * dy * dy) + tg.b[i] * dx * dy;
            if (sigma < 0.0f || sigma > tg.cut[i]) continue;
            const float alpha = std::min(kAlphaMax, tg.o[i] * std::exp(-sigma));
            if (alpha < kAlphaMin) continue;
            const float next_t = T * (1.0f - alpha);
            if (next_t <= kTMin) break;
            const float w = alpha * T;
            const float* col = cl + bins.ids[s + i] * nc;
            for (int64_t ch = 0; ch < nc; ++ch) acc[ch] += w * col[ch];
            T = next_t;
            end = s + i + 1;
          }
          const int64_t p = y * width + x;
          for (int64_t ch = 0; ch < nc; ++ch) img[p * nc + ch] = acc[ch] + T * bg[ch];
          ft[p] = T;
          lst[p] = end;
        }
      }
    }
  }
  auto offsets = torch::from_blob(bins.offsets.data(), {(int64_t)bins.offsets.size()}, torch::kInt64).clone();
  auto ids = torch::from_blob(bins.ids.data(), {(int64_t)bins.ids.size()}, torch::kInt32).clone();
  return {image, final_t, last, offsets, ids};
}

std::vector<torch::Tensor> splat_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                          torch::Tensor opacities, torch::Tensor background, torch::Tensor final_t,
                                          torch::Tensor last, torch::Tensor offsets, torch::Tensor ids,
                                          torch::Tensor v_image, torch::Tensor v_alpha, int64_t tile_size) {
  const int64_t n = means2d.size(0), nc = colors.size(1);
  const int64_t height = final_t.size(0), width = final_t.size(1);
  const int ts = (int)tile_size;
  const int tiles_x = (int)((width + ts - 1) / ts), tiles_y = (int)((height + ts - 1) / ts);
  const int n_threads = omp_get_max_threads();
  const int64_t stride = 2 + 3 + nc + 1;  // per Gaussian: mean2d, conic, colour, opacity
  std::vector<float> grads((size_t)n_threads * n * stride, 0.0f);
  const float* m2 = means2d.data_ptr<float>();
  const float* co = conics.data_ptr<float>();
  const float* cl = colors.data_ptr<float>();
  const float* op = opacities.data_ptr<float>();
  const float* bg = background.data_ptr<float>();
  const float* ft = final_t.data_ptr<float>();
  const int64_t* lst = last.data_ptr<int64_t>();
  const int64_t* off = offsets.data_ptr<int64_t>();
  const int32_t* gid = ids.data_ptr<int32_t>();
  const float* vimg = v_image.data_ptr<float>();
  const float* valpha = v_alpha.data_ptr<float>();
#pragma omp parallel
  {
    float* mine = grads.data() + (size_t)omp_get_thread_num() * n * stride;
    std::vector<float> behind(nc), local;
    TileGaussians tg;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < (int64_t)tiles_x * tiles_y; ++t) {
      const int64_t s = off[t], k = off[t + 1] - s;
      if (k == 0) continue;
      tg.load(off, gid, t, m2, co, op);
      local.assign((size_t)k * stride, 0.0f);
      const int64_t x0 = (t % tiles_x) * ts, y0 = (t / tiles_x) * ts;
      for (int64_t y = y0; y < std::min<int64_t>(y0 + ts, height); ++y) {
        for (int64_t x = x0; x < std::min<int64_t>(x0 + ts, width); ++x) {
          const int64_t p = y * width + x;
          const float px = (float)x + 0.5f, py = (float)y + 0.5f;
          const float t_final = ft[p];
          float T = t_final;
          for (int64_t ch = 0; ch < nc; ++ch) behind[ch] = t_final * bg[ch];
          const float* vc = vimg + p * nc;
          const float va = valpha[p];
          for (int64_t i = lst[p] - 1 - s; i >= 0; --i) {
            const float dx = tg.mx[i] - px, dy = tg.my[i] - py;
            const float sigma = 0.5f * (tg.a[i] * dx * dx + tg.c[i] * dy * dy) + tg.b[i] * dx * dy;
            if (sigma < 0.0f || sigma > tg.cut[i]) continue;
            const float vis = std::exp(-sigma);
            const float raw = tg.o[i] * vis;
            const float alpha = std::min(kAlphaMax, raw);
            if (alpha < kAlphaMin) continue;
            const float ra = 1.0f / (1.0f - alpha);
            T *= ra;
            const float w = alpha * T;
            const float* col = cl + gid[s + i] * nc;
            float* gg = local.data() + i * stride;
            float v_a = va * t_final * ra;
            for (int64_t ch = 0; ch < nc; ++ch) {
              gg[5 + ch] += w * vc[ch];
              v_a += (col[ch] * T - behind[ch] * ra) * vc[ch];
              behind[ch] += col[ch] * w;
            }
            if (raw <= kAlphaMax) {
              const float v_sigma = -raw * v_a;
              gg[0] += v_sigma * (tg.a[i] * dx + tg.b[i] * dy);
              gg[1] += v_sigma * (tg.b[i] * dx + tg.c[i] * dy);
              gg[2] += v_sigma * 0.5f * dx * dx;
              gg[3] += v_sigma * dx * dy;
              gg[4] += v_sigma * 0.5f * dy * dy;
              gg[5 + nc] += vis * v_a;
            }
          }
        }
      }
      for (int64_t i = 0; i < k; ++i) {
        float* dst = mine + (int64_t)gid[s + i] * stride;
        const float* src = local.data() + i * stride;
        for (int64_t q = 0; q < stride; ++q) dst[q] += src[q];
      }
    }
  }
  auto out = torch::zeros({n, stride}, means2d.options());
  float* o = out.data_ptr<float>();
#pragma omp parallel for
  for (int64_t i = 0; i < n * stride; ++i) {
    float sum = 0.0f;
    for (int th = 0; th < n_threads; ++th) sum += grads[(size_t)th * n * stride + i];
    o[i] = sum;
  }
  return {out.narrow(1, 0, 2).contiguous(), out.narrow(1, 2, 3).contiguous(), out.narrow(1, 5, nc).contiguous(),
          out.narrow(1, 5 + nc, 1).reshape({n}).contiguous()};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &splat_forward, "Gaussian splatting forward (CPU)");
  m.def("backward", &splat_backward, "Gaussian splatting backward (CPU)");
}
