// Tile-based Gaussian splatting rasterizer for CPU (forward and backward), OpenMP over tiles.
//
// Twin of omnifield/renderers/splat/rasterize.py::_rasterize_to_pixels (same binning rule, same
// blending, same early termination). Binning: visible Gaussians are stably sorted by depth, then
// appended to the lists of the tiles that the box around their ellipse of alpha cut-off covers
// (binning.py), so every tile list is front to back.
// Within a tile, pixels go in runs of 16 along a row (SIMD lanes), each Gaussian for all of them at
// once, and only the Gaussians whose ellipse reaches the alpha cut-off somewhere on that row.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

// Half-extents (x, y) of the box around a Gaussian's ellipse of alpha cut-off (sigma <= log(255 o)), at most its
// radius (binning.py: ellipse_extents): pixels outside it draw nothing, so thin Gaussians skip most tiles.
constexpr float kCutSlack = 1e-4f;

// The largest sigma at which a Gaussian of opacity o still draws (alpha = o exp(-sigma) >= 1/255); < 0: never.
inline float alpha_cut(float opacity) { return std::log(std::max(opacity, 1e-30f) / kAlphaMin); }

void ellipse_extents(const float* conic, float opacity, int32_t radius, float ext[2]) {
  const float a = conic[0], b = conic[1], c = conic[2];
  const float det = a * c - b * b;
  const float r = (float)radius;
  if (!(det > 0.0f && a > 0.0f && c > 0.0f)) {
    ext[0] = ext[1] = r;
    return;
  }
  const float cut = std::max(alpha_cut(opacity), 0.0f) + kCutSlack;
  ext[0] = std::min(std::sqrt(2.0f * cut * c / det), r);
  ext[1] = std::min(std::sqrt(2.0f * cut * a / det), r);
}

void tile_rect(const float* m, const float ext[2], int ts, int tx, int ty, int64_t lo[2], int64_t hi[2]) {
  const int64_t limits[2] = {tx, ty};
  for (int k = 0; k < 2; ++k) {
    int64_t a = (int64_t)std::floor((m[k] - ext[k]) / (float)ts);
    int64_t b = (int64_t)std::ceil((m[k] + ext[k]) / (float)ts);
    lo[k] = std::min(std::max<int64_t>(a, 0), limits[k]);
    hi[k] = std::min(std::max<int64_t>(b, 0), limits[k]);
  }
}

Bins bin_gaussians(const float* means2d, const float* conics, const float* opacities, const int32_t* radii,
                   const float* depths, int64_t n, int width, int height, int ts) {
  const int tx = (width + ts - 1) / ts, ty = (height + ts - 1) / ts;
  std::vector<int32_t> order;
  order.reserve(n);
  for (int64_t i = 0; i < n; ++i)
    if (radii[i] > 0) order.push_back((int32_t)i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return depths[a] < depths[b]; });
  std::vector<float> ext(2 * (size_t)n);
  for (int32_t g : order) ellipse_extents(conics + 3 * g, opacities[g], radii[g], ext.data() + 2 * g);
  Bins bins;
  bins.offsets.assign((size_t)tx * ty + 1, 0);
  int64_t lo[2], hi[2];
  for (int32_t g : order) {
    tile_rect(means2d + 2 * g, ext.data() + 2 * g, ts, tx, ty, lo, hi);
    for (int64_t y = lo[1]; y < hi[1]; ++y)
      for (int64_t x = lo[0]; x < hi[0]; ++x) bins.offsets[y * tx + x + 1]++;
  }
  std::partial_sum(bins.offsets.begin(), bins.offsets.end(), bins.offsets.begin());
  bins.ids.resize(bins.offsets.back());
  std::vector<int64_t> cursor(bins.offsets.begin(), bins.offsets.end() - 1);
  for (int32_t g : order) {
    tile_rect(means2d + 2 * g, ext.data() + 2 * g, ts, tx, ty, lo, hi);
    for (int64_t y = lo[1]; y < hi[1]; ++y)
      for (int64_t x = lo[0]; x < hi[0]; ++x) bins.ids[cursor[y * tx + x]++] = g;
  }
  return bins;
}

// How far (in pixels, vertically) each Gaussian reaches the alpha cut-off: [N], -1 when it is too faint to
// show anywhere. For a positive definite conic, sigma along a pixel row at vertical offset dy is at least
// 0.5 dy^2 (c - b^2 / a), and alpha >= 1/255 needs sigma <= log(o * 255).
std::vector<float> vertical_reach(const float* conics, const float* opac, int64_t n) {
  std::vector<float> reach(n);
#pragma omp parallel for
  for (int64_t g = 0; g < n; ++g) {
    const float a = conics[3 * g], b = conics[3 * g + 1], c = conics[3 * g + 2];
    const float cut = alpha_cut(opac[g]) + kCutSlack;
    const float det = a * c - b * b;
    const float flat = (a > 0.0f && det > 0.0f) ? 0.5f * det / a : 0.0f;
    reach[g] = cut < 0.0f ? -1.0f : flat > 0.0f ? std::sqrt(cut / flat) : INFINITY;
  }
  return reach;
}

// Per-tile copy of the Gaussians it blends (front to back; per Gaussian: mean x, y, conic a, b, c,
// opacity, colour), and for each pixel row of the tile the Gaussians that reach it.
struct TileGaussians {
  static constexpr int kMx = 0, kMy = 1, kA = 2, kB = 3, kC = 4, kO = 5, kColor = 6;
  int64_t stride = 0;
  std::vector<float> data;                 // [k, stride]
  std::vector<std::vector<int32_t>> rows;  // rows[r]: tile-list positions (ascending) reaching row r
  const float* at(int64_t i) const { return data.data() + i * stride; }
  void load(const int64_t* offsets, const int32_t* ids, int64_t t, const float* means2d, const float* conics,
            const float* opac, const float* colors, int64_t nc, const float* reach, int64_t row0,
            int64_t n_rows) {
    const int64_t s = offsets[t], k = offsets[t + 1] - s;
    stride = kColor + nc;
    data.resize(k * stride);
    rows.resize(n_rows);
    for (auto& r : rows) r.clear();
    for (int64_t i = 0; i < k; ++i) {
      const int32_t g = ids[s + i];
      float* d = data.data() + i * stride;
      d[kMx] = means2d[2 * g];
      d[kMy] = means2d[2 * g + 1];
      d[kA] = conics[3 * g];
      d[kB] = conics[3 * g + 1];
      d[kC] = conics[3 * g + 2];
      d[kO] = opac[g];
      for (int64_t ch = 0; ch < nc; ++ch) d[kColor + ch] = colors[g * nc + ch];
      if (reach[g] < 0.0f) continue;
      const float top = d[kMy] - 0.5f - (float)row0;  // the Gaussian's centre, in the tile's row units
      const int64_t lo = std::max<int64_t>(0, (int64_t)std::max(std::ceil(top - reach[g]), -1.0f));
      const int64_t hi = std::min<int64_t>(n_rows - 1, (int64_t)std::min(std::floor(top + reach[g]), 1e9f));
      for (int64_t r = lo; r <= hi; ++r) rows[r].push_back((int32_t)i);
    }
  }
};

// Pixels are processed as runs of kLanes along a tile row, one Gaussian at a time for all of them:
// the inner loops over lanes have no branches and compile to SIMD.
constexpr int kLanes = 16;

// exp(x) for x <= 0, vectorizable (Cody-Waite reduction + degree-6 polynomial, relative error ~2e-7).
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float k = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Lane state of one run of pixels.
struct Run {
  int64_t y, x0, row;  // row: y within the tile
  int n;  // pixels in the run (<= kLanes)
  float px[kLanes];
  float py;
  void at(int64_t pixel_row, int64_t tile_row, int64_t first, int count) {
    y = pixel_row;
    row = tile_row;
    x0 = first;
    n = count;
    py = (float)pixel_row + 0.5f;
    for (int l = 0; l < kLanes; ++l) px[l] = (float)(first + l) + 0.5f;
  }
};

// First pixel row of tile t and its number of rows.
inline int64_t tile_row0(int64_t t, int tiles_x, int ts) { return (t / tiles_x) * ts; }
inline int64_t tile_rows(int64_t t, int tiles_x, int ts, int64_t height) {
  return std::min<int64_t>(ts, height - tile_row0(t, tiles_x, ts));
}

// Calls f(run) for every run of <= kLanes pixels of tile t.
template <class F>
void for_each_run(int64_t t, int tiles_x, int ts, int64_t width, int64_t height, F&& f) {
  const int64_t tx0 = (t % tiles_x) * ts, ty0 = tile_row0(t, tiles_x, ts);
  const int64_t x_end = std::min<int64_t>(tx0 + ts, width), y_end = std::min<int64_t>(ty0 + ts, height);
  Run run;
  for (int64_t y = ty0; y < y_end; ++y)
    for (int64_t x = tx0; x < x_end; x += kLanes) {
      run.at(y, y - ty0, x, (int)std::min<int64_t>(kLanes, x_end - x));
      f(run);
    }
}

}  // namespace

std::vector<torch::Tensor> splat_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                         torch::Tensor opacities, torch::Tensor depths, torch::Tensor radii,
                                         torch::Tensor background, int64_t width, int64_t height,
                                         int64_t tile_size) {
  const int64_t n = means2d.size(0), nc = colors.size(1);
  const int ts = (int)tile_size;
  const int tiles_x = (int)((width + ts - 1) / ts), tiles_y = (int)((height + ts - 1) / ts);
  Bins bins = bin_gaussians(means2d.data_ptr<float>(), conics.data_ptr<float>(), opacities.data_ptr<float>(),
                            radii.data_ptr<int32_t>(), depths.data_ptr<float>(), n, (int)width, (int)height, ts);
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
  const std::vector<float> reach = vertical_reach(co, op, n);
#pragma omp parallel
  {
    TileGaussians tg;
    std::vector<float> acc((size_t)nc * kLanes);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < (int64_t)tiles_x * tiles_y; ++t) {
      tg.load(bins.offsets.data(), bins.ids.data(), t, m2, co, op, cl, nc, reach.data(), tile_row0(t, tiles_x, ts),
              tile_rows(t, tiles_x, ts, height));
      const int64_t s = bins.offsets[t];
      for_each_run(t, tiles_x, ts, width, height, [&](const Run& run) {
        float T[kLanes], done[kLanes];
        int64_t end[kLanes];
        for (int l = 0; l < kLanes; ++l) {
          T[l] = 1.0f;
          done[l] = l < run.n ? 0.0f : 1.0f;
          end[l] = s;
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        int n_done = kLanes - run.n;
        const std::vector<int32_t>& reaching = tg.rows[run.row];
        for (size_t j = 0; j < reaching.size() && n_done < kLanes; ++j) {
          const int64_t i = reaching[j];
          const float* gauss = tg.at(i);
          const float dy = gauss[TileGaussians::kMy] - run.py, mx = gauss[TileGaussians::kMx];
          const float a = gauss[TileGaussians::kA], b = gauss[TileGaussians::kB], c = gauss[TileGaussians::kC];
          const float o = gauss[TileGaussians::kO];
          const float* col = gauss + TileGaussians::kColor;
          float w[kLanes];
          int terminated = 0, blended = 0;
#pragma omp simd reduction(+ : terminated, blended)
          for (int l = 0; l < kLanes; ++l) {
            const float dx = mx - run.px[l];
            const float sigma = 0.5f * (a * dx * dx + c * dy * dy) + b * dx * dy;
            const float alpha = std::min(kAlphaMax, o * exp_nonpositive(-std::max(sigma, 0.0f)));
            const bool valid = done[l] == 0.0f && sigma >= 0.0f && alpha >= kAlphaMin;
            const float next_t = T[l] * (1.0f - alpha);
            const bool stop = valid && next_t <= kTMin;
            const bool blend = valid && !stop;
            w[l] = blend ? alpha * T[l] : 0.0f;
            T[l] = blend ? next_t : T[l];
            end[l] = blend ? s + i + 1 : end[l];
            done[l] = stop ? 1.0f : done[l];
            terminated += stop ? 1 : 0;
            blended += blend ? 1 : 0;
          }
          n_done += terminated;
          if (blended == 0) continue;
          for (int64_t ch = 0; ch < nc; ++ch) {
            float* acc_ch = acc.data() + ch * kLanes;
            const float cc = col[ch];
#pragma omp simd
            for (int l = 0; l < kLanes; ++l) acc_ch[l] += w[l] * cc;
          }
        }
        for (int l = 0; l < run.n; ++l) {
          const int64_t p = run.y * width + run.x0 + l;
          for (int64_t ch = 0; ch < nc; ++ch) img[p * nc + ch] = acc[ch * kLanes + l] + T[l] * bg[ch];
          ft[p] = T[l];
          lst[p] = end[l];
        }
      });
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
  const std::vector<float> reach = vertical_reach(co, op, n);
#pragma omp parallel
  {
    float* mine = grads.data() + (size_t)omp_get_thread_num() * n * stride;
    std::vector<float> behind((size_t)nc * kLanes), vcol((size_t)nc * kLanes), local;
    TileGaussians tg;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < (int64_t)tiles_x * tiles_y; ++t) {
      const int64_t s = off[t], k = off[t + 1] - s;
      if (k == 0) continue;
      tg.load(off, gid, t, m2, co, op, cl, nc, reach.data(), tile_row0(t, tiles_x, ts),
              tile_rows(t, tiles_x, ts, height));
      local.assign((size_t)k * stride, 0.0f);
      for_each_run(t, tiles_x, ts, width, height, [&](const Run& run) {
        float T[kLanes], t_final[kLanes], v_a_final[kLanes];
        int64_t count[kLanes];  // Gaussians of the tile list that blended into each pixel
        int64_t longest = 0;
        for (int l = 0; l < kLanes; ++l) {
          const int64_t p = run.y * width + run.x0 + l;
          const bool in = l < run.n;
          t_final[l] = in ? ft[p] : 1.0f;
          T[l] = t_final[l];
          count[l] = in ? lst[p] - s : 0;
          longest = std::max(longest, count[l]);
          v_a_final[l] = in ? valpha[p] * t_final[l] : 0.0f;
          for (int64_t ch = 0; ch < nc; ++ch) {
            behind[ch * kLanes + l] = t_final[l] * bg[ch];
            vcol[ch * kLanes + l] = in ? vimg[p * nc + ch] : 0.0f;
          }
        }
        const std::vector<int32_t>& reaching = tg.rows[run.row];
        for (size_t j = reaching.size(); j-- > 0;) {
          const int64_t i = reaching[j];
          if (i >= longest) continue;
          const float* gauss = tg.at(i);
          const float dy = gauss[TileGaussians::kMy] - run.py, mx = gauss[TileGaussians::kMx];
          const float a = gauss[TileGaussians::kA], b = gauss[TileGaussians::kB], c = gauss[TileGaussians::kC];
          const float o = gauss[TileGaussians::kO];
          const float* col = gauss + TileGaussians::kColor;
          float w[kLanes], ra[kLanes], on[kLanes], v_a[kLanes], v_sigma[kLanes], dxs[kLanes], vis_l[kLanes];
          int n_on = 0;
#pragma omp simd reduction(+ : n_on)
          for (int l = 0; l < kLanes; ++l) {
            const float dx = mx - run.px[l];
            const float sigma = 0.5f * (a * dx * dx + c * dy * dy) + b * dx * dy;
            const float vis = exp_nonpositive(-std::max(sigma, 0.0f));
            const float raw = o * vis;
            const float alpha = std::min(kAlphaMax, raw);
            const bool valid = i < count[l] && sigma >= 0.0f && alpha >= kAlphaMin;
            on[l] = valid ? 1.0f : 0.0f;
            ra[l] = valid ? 1.0f / (1.0f - alpha) : 1.0f;
            T[l] *= ra[l];
            w[l] = valid ? alpha * T[l] : 0.0f;
            v_a[l] = valid ? v_a_final[l] * ra[l] : 0.0f;
            // the opacity and conic gradients vanish where alpha is clamped
            v_sigma[l] = (valid && raw <= kAlphaMax) ? -raw : 0.0f;
            vis_l[l] = (valid && raw <= kAlphaMax) ? vis : 0.0f;
            dxs[l] = dx;
            n_on += valid ? 1 : 0;
          }
          if (n_on == 0) continue;  // it draws none of these pixels: nothing changes, no gradient
          float* gg = local.data() + i * stride;
          for (int64_t ch = 0; ch < nc; ++ch) {
            float* beh = behind.data() + ch * kLanes;
            const float* vc = vcol.data() + ch * kLanes;
            const float cc = col[ch];
            float g_col = 0.0f;
#pragma omp simd reduction(+ : g_col)
            for (int l = 0; l < kLanes; ++l) {
              g_col += w[l] * vc[l];
              v_a[l] += on[l] * (cc * T[l] - beh[l] * ra[l]) * vc[l];
              beh[l] += cc * w[l];
            }
            gg[5 + ch] += g_col;
          }
          float g0 = 0.0f, g1 = 0.0f, g2 = 0.0f, g3 = 0.0f, g4 = 0.0f, g_o = 0.0f;
#pragma omp simd reduction(+ : g0, g1, g2, g3, g4, g_o)
          for (int l = 0; l < kLanes; ++l) {
            const float dx = dxs[l], vs = v_sigma[l] * v_a[l];
            g0 += vs * (a * dx + b * dy);
            g1 += vs * (b * dx + c * dy);
            g2 += vs * 0.5f * dx * dx;
            g3 += vs * dx * dy;
            g4 += vs * 0.5f * dy * dy;
            g_o += vis_l[l] * v_a[l];
          }
          gg[0] += g0;
          gg[1] += g1;
          gg[2] += g2;
          gg[3] += g3;
          gg[4] += g4;
          gg[5 + nc] += g_o;
        }
      });
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
