// Ray marching with occupancy-grid skipping on the CPU (OpenMP), the kernel behind `march_rays`.
//
// Semantics are those of the torch twin `_march_rays` (omnifield/renderers/raymarch.py): ray r has
// ceil((far - near) / dt) candidate samples t_k = near + k dt (kept while t_k < far), sample k covers
// [t_k, min(t_k + dt, far)] and is kept when the occupancy cell of its midpoint is occupied. Two
// passes over the rays (count, then fill at the prefix-summed offsets) give packed output ordered by
// ray, then t. Arithmetic follows the twin operation by operation in float32 (no contraction into
// FMAs, no reciprocal division), so both pick the same cells.

#include <torch/extension.h>

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#pragma GCC optimize("no-fast-math", "fp-contract=off")

namespace {

struct Grid {
  const bool* occupied;  // [G, G, G], x-major
  int64_t res;           // G
  float lo[3];
  float extent[3];  // hi - lo
  float res_f;
};

struct Rays {
  const float* origins;     // [R, 3]
  const float* directions;  // [R, 3]
  const float* near;        // [R]
  const float* far;         // [R]
  float dt;
};

inline int64_t clamp_cell(float u, int64_t res) {
  int64_t i = static_cast<int64_t>(std::floor(u));
  return i < 0 ? 0 : (i > res - 1 ? res - 1 : i);
}

inline bool occupied_at(const Grid& grid, const float* o, const float* d, float mid_t) {
  int64_t ijk[3];
  for (int a = 0; a < 3; ++a) {
    const float p = o[a] + d[a] * mid_t;
    ijk[a] = clamp_cell((p - grid.lo[a]) / grid.extent[a] * grid.res_f, grid.res);
  }
  return grid.occupied[(ijk[0] * grid.res + ijk[1]) * grid.res + ijk[2]];
}

inline int64_t n_candidates(float near, float far, float dt) {
  if (!(far > near)) return 0;
  const float c = std::ceil((far - near) / dt);
  return c > 0.0f ? static_cast<int64_t>(c) : 0;
}

// Visits the kept samples of ray r in order; emit(t_start, t_end) for each.
template <typename Emit>
inline void march_ray(const Rays& rays, const Grid& grid, int64_t r, Emit&& emit) {
  const float near = rays.near[r], far = rays.far[r], dt = rays.dt;
  const float* o = rays.origins + 3 * r;
  const float* d = rays.directions + 3 * r;
  const int64_t count = n_candidates(near, far, dt);
  for (int64_t k = 0; k < count; ++k) {
    const float t0 = near + static_cast<float>(k) * dt;
    if (!(t0 < far)) break;
    const float t_step = t0 + dt;
    const float t1 = t_step < far ? t_step : far;
    const float mid = (t0 + t1) * 0.5f;
    if (occupied_at(grid, o, d, mid)) emit(t0, t1);
  }
}

std::vector<torch::Tensor> march_rays(torch::Tensor origins, torch::Tensor directions, torch::Tensor near,
                                      torch::Tensor far, torch::Tensor occupancy, torch::Tensor aabb,
                                      double step_size) {
  TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3, "origins must be [R, 3]");
  TORCH_CHECK(directions.sizes() == origins.sizes(), "directions must be [R, 3] like origins");
  const int64_t n_rays = origins.size(0);
  TORCH_CHECK(near.numel() == n_rays && far.numel() == n_rays, "near and far must be [R]");
  TORCH_CHECK(occupancy.dim() == 3 && occupancy.size(0) == occupancy.size(1) &&
                  occupancy.size(1) == occupancy.size(2) && occupancy.scalar_type() == torch::kBool,
              "occupancy must be a cubic [G, G, G] bool grid");
  TORCH_CHECK(aabb.numel() == 6, "aabb must have 6 values");
  TORCH_CHECK(step_size > 0.0, "step_size must be positive");
  for (const auto* t : {&origins, &directions, &near, &far}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kFloat32, "ray tensors must be CPU float32");
  }
  origins = origins.contiguous();
  directions = directions.contiguous();
  near = near.contiguous();
  far = far.contiguous();
  occupancy = occupancy.contiguous();
  const auto box = aabb.to(torch::kFloat32).contiguous();
  const float* b = box.data_ptr<float>();

  Grid grid;
  grid.occupied = occupancy.data_ptr<bool>();
  grid.res = occupancy.size(0);
  grid.res_f = static_cast<float>(grid.res);
  for (int a = 0; a < 3; ++a) {
    grid.lo[a] = b[a];
    grid.extent[a] = b[a + 3] - b[a];
  }
  const Rays rays{origins.data_ptr<float>(), directions.data_ptr<float>(), near.data_ptr<float>(),
                  far.data_ptr<float>(), static_cast<float>(step_size)};

  std::vector<int64_t> first(n_rays + 1, 0);
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < n_rays; ++r) {
    int64_t kept = 0;
    march_ray(rays, grid, r, [&](float, float) { ++kept; });
    first[r + 1] = kept;
  }
  for (int64_t r = 0; r < n_rays; ++r) first[r + 1] += first[r];
  const int64_t total = first[n_rays];

  auto ray_indices = torch::empty({total}, origins.options().dtype(torch::kInt64));
  auto t_starts = torch::empty({total}, origins.options());
  auto t_ends = torch::empty({total}, origins.options());
  int64_t* out_ray = ray_indices.data_ptr<int64_t>();
  float* out_t0 = t_starts.data_ptr<float>();
  float* out_t1 = t_ends.data_ptr<float>();
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < n_rays; ++r) {
    int64_t s = first[r];
    march_ray(rays, grid, r, [&](float t0, float t1) {
      out_ray[s] = r;
      out_t0[s] = t0;
      out_t1[s] = t1;
      ++s;
    });
  }
  return {ray_indices, t_starts, t_ends};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Ray marching with occupancy-grid skipping (CPU, OpenMP)";
  m.def("march_rays", &march_rays, "packed (ray_indices, t_starts, t_ends) of samples in occupied cells");
}
