// EWA projection of 3-D Gaussians given by scales and quaternions, forward and backward, one Gaussian per
// iteration (OpenMP).
//
// Twin of omnifield/renderers/splat/projection.py::project_gaussians applied to
// omnifield/fields/gaussians.py::build_covariances (same formulas, same clamps, same visibility rule);
// the backward is the chain rule of that composition written out, so no [N, 3, 3] intermediates are
// stored. The camera (viewmat, K) gets no gradient here: callers that optimise poses use the twin.
#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

struct Camera {
  float W[3][3], w[3];  // world-to-camera rotation and translation
  float fx, fy, cx, cy;
  float lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg;  // frustum clamp of t_x / t_z, t_y / t_z for J
  Camera(const float* viewmat, const float* K, int64_t width, int64_t height) {
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) W[i][j] = viewmat[4 * i + j];
      w[i] = viewmat[4 * i + 3];
    }
    fx = K[0], fy = K[4], cx = K[2], cy = K[5];
    const float tan_fovx = 0.5f * (float)width / fx, tan_fovy = 0.5f * (float)height / fy;
    lim_x_pos = ((float)width - cx) / fx + 0.3f * tan_fovx;
    lim_x_neg = cx / fx + 0.3f * tan_fovx;
    lim_y_pos = ((float)height - cy) / fy + 0.3f * tan_fovy;
    lim_y_neg = cy / fy + 0.3f * tan_fovy;
  }
};

// Everything the forward computes for one Gaussian (the backward recomputes it).
struct Projected {
  float qn[4], qnorm;     // normalised quaternion (w, x, y, z) and the norm it was divided by
  float R[3][3], M[3][3];  // rotation, M = R diag(scale)
  float Sigma[3][3];       // M M^T
  float t[3], tz;          // camera-space mean, depth clamped to the near plane
  float tx, ty;            // t_x, t_y clamped to the widened frustum (for J)
  bool clamp_x, clamp_y;
  float P[2][3];           // J W
  float a, b, c, det;      // 2-D covariance (with eps2d on the diagonal) and its determinant
};

void project_one(const float* mean, const float* scale, const float* quat, const Camera& cam, float near,
                 float eps2d, Projected& p) {
  const float norm = std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  p.qnorm = std::max(norm, 1e-12f);
  for (int i = 0; i < 4; ++i) p.qn[i] = quat[i] / p.qnorm;
  const float w = p.qn[0], x = p.qn[1], y = p.qn[2], z = p.qn[3];
  const float R[3][3] = {{1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)},
                         {2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)},
                         {2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      p.R[i][j] = R[i][j];
      p.M[i][j] = R[i][j] * scale[j];
    }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) p.Sigma[i][j] = p.M[i][0] * p.M[j][0] + p.M[i][1] * p.M[j][1] + p.M[i][2] * p.M[j][2];
  for (int i = 0; i < 3; ++i)
    p.t[i] = cam.W[i][0] * mean[0] + cam.W[i][1] * mean[1] + cam.W[i][2] * mean[2] + cam.w[i];
  p.tz = std::max(p.t[2], near);
  const float u = p.t[0] / p.tz, v = p.t[1] / p.tz;
  const float uc = std::min(std::max(u, -cam.lim_x_neg), cam.lim_x_pos);
  const float vc = std::min(std::max(v, -cam.lim_y_neg), cam.lim_y_pos);
  p.clamp_x = uc != u;
  p.clamp_y = vc != v;
  p.tx = p.tz * uc;
  p.ty = p.tz * vc;
  const float J[2][3] = {{cam.fx / p.tz, 0.0f, -cam.fx * p.tx / (p.tz * p.tz)},
                         {0.0f, cam.fy / p.tz, -cam.fy * p.ty / (p.tz * p.tz)}};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) p.P[i][j] = J[i][0] * cam.W[0][j] + J[i][1] * cam.W[1][j] + J[i][2] * cam.W[2][j];
  float PS[2][3];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      PS[i][j] = p.P[i][0] * p.Sigma[0][j] + p.P[i][1] * p.Sigma[1][j] + p.P[i][2] * p.Sigma[2][j];
  auto cov = [&](int i, int j) { return PS[i][0] * p.P[j][0] + PS[i][1] * p.P[j][1] + PS[i][2] * p.P[j][2]; };
  p.a = cov(0, 0) + eps2d;
  p.b = cov(0, 1);
  p.c = cov(1, 1) + eps2d;
  p.det = p.a * p.c - p.b * p.b;
}

}  // namespace

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor scales, torch::Tensor quats,
                                           torch::Tensor opacities, torch::Tensor viewmat, torch::Tensor K,
                                           int64_t width, int64_t height, double near, double far, double eps2d,
                                           bool use_opacity) {
  const int64_t n = means.size(0);
  const Camera cam(viewmat.data_ptr<float>(), K.data_ptr<float>(), width, height);
  auto means2d = torch::empty({n, 2}, means.options());
  auto conics = torch::empty({n, 3}, means.options());
  auto depths = torch::empty({n}, means.options());
  auto radii = torch::empty({n}, means.options().dtype(torch::kInt32));
  const float* mu = means.data_ptr<float>();
  const float* sc = scales.data_ptr<float>();
  const float* q = quats.data_ptr<float>();
  const float* op = use_opacity ? opacities.data_ptr<float>() : nullptr;
  float* m2 = means2d.data_ptr<float>();
  float* con = conics.data_ptr<float>();
  float* dep = depths.data_ptr<float>();
  int32_t* rad = radii.data_ptr<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < n; ++g) {
    Projected p;
    project_one(mu + 3 * g, sc + 3 * g, q + 4 * g, cam, (float)near, (float)eps2d, p);
    const float det_safe = p.det > 0.0f ? p.det : 1.0f;
    con[3 * g] = p.c / det_safe;
    con[3 * g + 1] = -p.b / det_safe;
    con[3 * g + 2] = p.a / det_safe;
    const float mx = cam.fx * p.t[0] / p.tz + cam.cx, my = cam.fy * p.t[1] / p.tz + cam.cy;
    m2[2 * g] = mx;
    m2[2 * g + 1] = my;
    dep[g] = p.t[2];
    const float mid = 0.5f * (p.a + p.c);
    const float lam = mid + std::sqrt(std::max(mid * mid - p.det, 0.01f));
    const float extent =
        op ? std::min(std::sqrt(2.0f * std::log(std::max(255.0f * op[g], 1.0f))), 3.33f) : 3.0f;
    const float r = std::ceil(extent * std::sqrt(lam));
    const bool visible = p.t[2] > (float)near && p.t[2] < (float)far && p.det > 0.0f && r > 0.0f &&
                         mx + r > 0.0f && mx - r < (float)width && my + r > 0.0f && my - r < (float)height;
    rad[g] = visible ? (int32_t)r : 0;
  }
  return {means2d, conics, depths, radii};
}

std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor scales, torch::Tensor quats,
                                            torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                            double near, double eps2d, torch::Tensor v_means2d,
                                            torch::Tensor v_conics, torch::Tensor v_depths) {
  const int64_t n = means.size(0);
  const Camera cam(viewmat.data_ptr<float>(), K.data_ptr<float>(), width, height);
  auto v_means = torch::empty({n, 3}, means.options());
  auto v_scales = torch::empty({n, 3}, means.options());
  auto v_quats = torch::empty({n, 4}, means.options());
  const float* mu = means.data_ptr<float>();
  const float* sc = scales.data_ptr<float>();
  const float* q = quats.data_ptr<float>();
  const float* vm2 = v_means2d.data_ptr<float>();
  const float* vcon = v_conics.data_ptr<float>();
  const float* vdep = v_depths.data_ptr<float>();
  float* gm = v_means.data_ptr<float>();
  float* gs = v_scales.data_ptr<float>();
  float* gq = v_quats.data_ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < n; ++g) {
    Projected p;
    project_one(mu + 3 * g, sc + 3 * g, q + 4 * g, cam, (float)near, (float)eps2d, p);
    // conics (c, -b, a) / det -> the 2-D covariance entries a, b, c
    const float vA = vcon[3 * g], vB = vcon[3 * g + 1], vC = vcon[3 * g + 2];
    float va, vb, vc;
    if (p.det > 0.0f) {
      const float id = 1.0f / p.det, id2 = id * id;
      const float a = p.a, b = p.b, c = p.c;
      va = vA * (-c * c * id2) + vB * (b * c * id2) + vC * (id - a * c * id2);
      vb = vA * (2.0f * b * c * id2) + vB * (-id - 2.0f * b * b * id2) + vC * (2.0f * a * b * id2);
      vc = vA * (id - a * c * id2) + vB * (a * b * id2) + vC * (-a * a * id2);
    } else {
      va = vC, vb = -vB, vc = vA;
    }
    // cov2d = P Sigma P^T, of which [0,0], [0,1], [1,1] are used: S2 = G2 + G2^T
    const float S2[2][2] = {{2.0f * va, vb}, {vb, 2.0f * vc}};
    float S2P[2][3];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) S2P[i][j] = S2[i][0] * p.P[0][j] + S2[i][1] * p.P[1][j];
    float vP[2][3];  // S2 P Sigma
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        vP[i][j] = S2P[i][0] * p.Sigma[0][j] + S2P[i][1] * p.Sigma[1][j] + S2P[i][2] * p.Sigma[2][j];
    float H[3][3];  // P^T S2 P: gradient of Sigma, symmetrised
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) H[i][j] = p.P[0][i] * S2P[0][j] + p.P[1][i] * S2P[1][j];
    // P = J W
    float vJ[2][3];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) vJ[i][j] = vP[i][0] * cam.W[j][0] + vP[i][1] * cam.W[j][1] + vP[i][2] * cam.W[j][2];
    const float tz = p.tz, iz = 1.0f / tz, iz2 = iz * iz, iz3 = iz2 * iz;
    float v_tz = vJ[0][0] * (-cam.fx * iz2) + vJ[0][2] * (2.0f * cam.fx * p.tx * iz3) + vJ[1][1] * (-cam.fy * iz2) +
                 vJ[1][2] * (2.0f * cam.fy * p.ty * iz3);
    const float v_tx = vJ[0][2] * (-cam.fx * iz2), v_ty = vJ[1][2] * (-cam.fy * iz2);
    float v_t[3] = {0.0f, 0.0f, vdep[g]};
    // tx = tz * clamp(t_x / tz): t_x itself inside the frustum, tz times the limit outside
    if (p.clamp_x) v_tz += v_tx * p.tx * iz; else v_t[0] += v_tx;
    if (p.clamp_y) v_tz += v_ty * p.ty * iz; else v_t[1] += v_ty;
    // means2d = (fx t_x / tz + cx, fy t_y / tz + cy)
    const float vmx = vm2[2 * g], vmy = vm2[2 * g + 1];
    v_t[0] += vmx * cam.fx * iz;
    v_t[1] += vmy * cam.fy * iz;
    v_tz += -vmx * cam.fx * p.t[0] * iz2 - vmy * cam.fy * p.t[1] * iz2;
    if (p.t[2] >= (float)near) v_t[2] += v_tz;  // tz = max(t_z, near)
    for (int j = 0; j < 3; ++j) gm[3 * g + j] = cam.W[0][j] * v_t[0] + cam.W[1][j] * v_t[1] + cam.W[2][j] * v_t[2];
    // Sigma = M M^T, M = R diag(scale)
    float vR[3][3];
    for (int j = 0; j < 3; ++j) {
      float vs = 0.0f;
      for (int i = 0; i < 3; ++i) {
        const float vM = H[i][0] * p.M[0][j] + H[i][1] * p.M[1][j] + H[i][2] * p.M[2][j];
        vs += vM * p.R[i][j];
        vR[i][j] = vM * sc[3 * g + j];
      }
      gs[3 * g + j] = vs;
    }
    // R(q / |q|)
    const float w = p.qn[0], x = p.qn[1], y = p.qn[2], z = p.qn[3];
    const float vqn[4] = {
        2.0f * (-z * vR[0][1] + y * vR[0][2] + z * vR[1][0] - x * vR[1][2] - y * vR[2][0] + x * vR[2][1]),
        2.0f * (y * vR[0][1] + z * vR[0][2] + y * vR[1][0] - 2.0f * x * vR[1][1] - w * vR[1][2] + z * vR[2][0] +
                w * vR[2][1] - 2.0f * x * vR[2][2]),
        2.0f * (-2.0f * y * vR[0][0] + x * vR[0][1] + w * vR[0][2] + x * vR[1][0] + z * vR[1][2] - w * vR[2][0] +
                z * vR[2][1] - 2.0f * y * vR[2][2]),
        2.0f * (-2.0f * z * vR[0][0] - w * vR[0][1] + x * vR[0][2] + w * vR[1][0] - 2.0f * z * vR[1][1] +
                y * vR[1][2] + x * vR[2][0] + y * vR[2][1]),
    };
    const float dot = w * vqn[0] + x * vqn[1] + y * vqn[2] + z * vqn[3];
    const bool normalised = p.qnorm > 1e-12f;  // below the floor F.normalize divides by a constant
    for (int i = 0; i < 4; ++i) gq[4 * g + i] = (vqn[i] - (normalised ? p.qn[i] * dot : 0.0f)) / p.qnorm;
  }
  return {v_means, v_scales, v_quats};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &project_forward, "EWA projection of Gaussians from scales and quaternions (CPU)");
  m.def("backward", &project_backward, "backward of the EWA projection (CPU)");
}
