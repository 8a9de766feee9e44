// livekv's CPU kernels: linear layers on GGUF blocks, and the fused steps of a decoder layer.
//
// Why: a decode step of a small model is bound by memory traffic and by the number of ops, not
// by arithmetic. These kernels read the GGUF's own 4/8-bit blocks (Q4_0, Q4_1, Q8_0: groups of 32
// weights with an fp16 scale, and an fp16 minimum for Q4_1) and multiply them with fp32
// activations, so the result is the fp32-dequantized model's to float tolerance. Each block is read
// once for all rows of a pass (up to FEW_ROWS); longer passes dequantize a slice of rows at a time
// into a GEMM. The other ops fuse what the torch path runs as several: RMSNorm, RoPE with the KV
// write, attention of a few queries over the cache (grouped heads read once), SiLU-and-multiply.
//
// AVX2 + FMA + F16C when the compiler targets them (built with -march=native); a portable scalar
// path otherwise (ARM builds take it: correct, slower). Threads: ATen's pool (torch.set_num_threads).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define LIVEKV_AVX2 1
#else
#define LIVEKV_AVX2 0
#endif

namespace {

constexpr int64_t BLOCK = 32;      // weights per block, every format
constexpr int64_t FEW_ROWS = 16;   // up to this many rows stream the blocks; more dequantize into a GEMM
constexpr int64_t GEMM_SLICE_FLOATS = 1 << 17;  // weights dequantized per GEMM slice (512 KB: stays in L2)

// GGML type ids, as in the GGUF file.
enum Format : int64_t { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8 };

int64_t block_bytes(int64_t format) {
  switch (format) {
    case Q4_0: return 18;
    case Q4_1: return 20;
    case Q8_0: return 34;
  }
  TORCH_CHECK(false, "unknown block format ", format, " (supported: Q4_0=2, Q4_1=3, Q8_0=8)");
}

inline float half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
#if LIVEKV_AVX2
  return _cvtsh_ss(bits);
#else
  return c10::detail::fp16_ieee_to_fp32_value(bits);
#endif
}

// One block's 32 weights as floats (the portable path, and the large-pass dequantization).
void decode_scalar(int64_t format, const uint8_t* b, float* w) {
  if (format == Q8_0) {
    const float d = half_at(b);
    for (int j = 0; j < 32; ++j) w[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
    return;
  }
  const bool has_min = format == Q4_1;
  const float d = half_at(b);
  const float m = has_min ? half_at(b + 2) : -8.0f * d;
  const uint8_t* qs = b + (has_min ? 4 : 2);
  for (int j = 0; j < 16; ++j) {
    w[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    w[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

#if LIVEKV_AVX2
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One block's 32 weights in four registers.
inline void decode_avx2(int64_t format, const uint8_t* b, __m256 w[4]) {
  const __m256 d = _mm256_set1_ps(half_at(b));
  if (format == Q8_0) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    w[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)));
    w[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))));
    w[2] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)));
    w[3] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))));
    return;
  }
  const bool has_min = format == Q4_1;
  const __m256 m = has_min ? _mm256_set1_ps(half_at(b + 2)) : _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + (has_min ? 4 : 2)));
  const __m128i nibble = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, nibble);                       // weights 0..15
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), nibble);    // weights 16..31
  w[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), d, m);
  w[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), d, m);
  w[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), d, m);
  w[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), d, m);
}

// exp(x) for x in [-87, 88] (clamped): range reduction
// to 2^n * exp(r), |r| <= ln2/2, and a degree-7 Taylor polynomial (relative error < 1e-8).
inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

// Output rows [n0, n1) for R (1-3) rows of x, each block decoded once for all R rows. Two
// accumulators per row (four for one row) so consecutive FMAs do not wait on each other.
template <int R>
void block_rows_avx2(int64_t format, const uint8_t* w, int64_t row_bytes, int64_t nblocks, const float* x,
                     int64_t x_stride, float* y, int64_t y_stride, int64_t n0, int64_t n1, int64_t bb) {
  constexpr int A = R == 1 ? 4 : 2;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w + n * row_bytes;
    __m256 acc[R][A];
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < A; ++a) acc[r][a] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; ++b) {
      __m256 v[4];
      decode_avx2(format, row + b * bb, v);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * x_stride + b * BLOCK;
        for (int q = 0; q < 4; ++q) acc[r][q % A] = _mm256_fmadd_ps(v[q], _mm256_loadu_ps(xr + 8 * q), acc[r][q % A]);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m256 sum = acc[r][0];
      for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, acc[r][a]);
      y[r * y_stride + n] = hsum(sum);
    }
  }
}
#endif

void block_rows_scalar(int64_t format, const uint8_t* w, int64_t row_bytes, int64_t nblocks, const float* x,
                       int64_t x_stride, int64_t rows, float* y, int64_t y_stride, int64_t n0, int64_t n1,
                       int64_t bb) {
  float v[32];
  std::vector<float> acc(rows);
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t b = 0; b < nblocks; ++b) {
      decode_scalar(format, w + n * row_bytes + b * bb, v);
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * x_stride + b * BLOCK;
        float s = 0.0f;
        for (int j = 0; j < 32; ++j) s += v[j] * xr[j];
        acc[r] += s;
      }
    }
    for (int64_t r = 0; r < rows; ++r) y[r * y_stride + n] = acc[r];
  }
}

#if LIVEKV_AVX2
// Four rows of x against two dequantized weight rows held in L1: eight independent accumulators.
void dot4x2_avx2(const float* w0, const float* w1, const float* x, int64_t x_stride, int64_t k, int64_t rows,
                 int64_t pair, float* y, int64_t y_stride) {
  __m256 acc[2][4];
  for (int p = 0; p < 2; ++p)
    for (int r = 0; r < 4; ++r) acc[p][r] = _mm256_setzero_ps();
  for (int64_t j = 0; j < k; j += 8) {
    const __m256 v0 = _mm256_loadu_ps(w0 + j), v1 = _mm256_loadu_ps(w1 + j);
    for (int r = 0; r < 4; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * x_stride + j);
      acc[0][r] = _mm256_fmadd_ps(v0, xv, acc[0][r]);
      acc[1][r] = _mm256_fmadd_ps(v1, xv, acc[1][r]);
    }
  }
  float sums[2][4];  // reduced with fixed indices first, so the accumulators stay in registers
  for (int p = 0; p < 2; ++p)
    for (int r = 0; r < 4; ++r) sums[p][r] = hsum(acc[p][r]);
  for (int p = 0; p < pair; ++p)
    for (int r = 0; r < rows; ++r) y[r * y_stride + p] = sums[p][r];
}
#endif

// y[:rows] for output rows [n0, n1). Up to 3 rows: each block decoded in registers for all of them.
// More: each weight row is decoded once into an L1 buffer and multiplied with 4 rows at a time.
void few_rows(int64_t format, const uint8_t* w, int64_t row_bytes, int64_t nblocks, const float* x,
              int64_t x_stride, int64_t rows, float* y, int64_t y_stride, int64_t n0, int64_t n1) {
  const int64_t bb = block_bytes(format);
#if LIVEKV_AVX2
  switch (rows) {
    case 1: block_rows_avx2<1>(format, w, row_bytes, nblocks, x, x_stride, y, y_stride, n0, n1, bb); return;
    case 2: block_rows_avx2<2>(format, w, row_bytes, nblocks, x, x_stride, y, y_stride, n0, n1, bb); return;
    case 3: block_rows_avx2<3>(format, w, row_bytes, nblocks, x, x_stride, y, y_stride, n0, n1, bb); return;
    default: break;
  }
  const int64_t k = nblocks * BLOCK;
  std::vector<float> wrows(2 * k);
  // x padded to a multiple of 4 rows so the 4-row kernel never reads past it
  const int64_t padded = (rows + 3) / 4 * 4;
  std::vector<float> xpad;
  if (padded != rows) {
    xpad.assign(padded * k, 0.0f);
    for (int64_t r = 0; r < rows; ++r) std::memcpy(xpad.data() + r * k, x + r * x_stride, k * sizeof(float));
    x = xpad.data();
    x_stride = k;
  }
  for (int64_t n = n0; n < n1; n += 2) {
    const int64_t pair = std::min<int64_t>(2, n1 - n);
    for (int64_t p = 0; p < 2; ++p) {
      const uint8_t* row = w + std::min(n + p, n1 - 1) * row_bytes;  // a lone last row is decoded twice
      for (int64_t b = 0; b < nblocks; ++b) {
        __m256 v[4];
        decode_avx2(format, row + b * bb, v);
        for (int q = 0; q < 4; ++q) _mm256_storeu_ps(wrows.data() + p * k + b * BLOCK + 8 * q, v[q]);
      }
    }
    for (int64_t r = 0; r < rows; r += 4)
      dot4x2_avx2(wrows.data(), wrows.data() + k, x + r * x_stride, x_stride, k, std::min<int64_t>(4, rows - r), pair,
                  y + r * y_stride + n, y_stride);
  }
#else
  block_rows_scalar(format, w, row_bytes, nblocks, x, x_stride, rows, y, y_stride, n0, n1, bb);
#endif
}

void dequantize_rows(int64_t format, const uint8_t* w, int64_t row_bytes, int64_t nblocks, int64_t n0, int64_t n1,
                     float* out) {
  const int64_t bb = block_bytes(format);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t b = 0; b < nblocks; ++b) {
      float* dst = out + (n - n0) * nblocks * BLOCK + b * BLOCK;
#if LIVEKV_AVX2
      __m256 v[4];
      decode_avx2(format, w + n * row_bytes + b * bb, v);
      for (int q = 0; q < 4; ++q) _mm256_storeu_ps(dst + 8 * q, v[q]);
#else
      decode_scalar(format, w + n * row_bytes + b * bb, dst);
#endif
    }
}

void check_blocks(const torch::Tensor& blocks, int64_t format, int64_t in_features) {
  TORCH_CHECK(blocks.dtype() == torch::kUInt8 && blocks.dim() == 2 && blocks.is_contiguous(),
              "blocks must be a contiguous (out_features, bytes per row) uint8 tensor");
  TORCH_CHECK(in_features % BLOCK == 0, "in_features must be a multiple of 32, got ", in_features);
  TORCH_CHECK(blocks.size(1) == in_features / BLOCK * block_bytes(format), "blocks have ", blocks.size(1),
              " bytes per row; ", in_features, " inputs in format ", format, " need ",
              in_features / BLOCK * block_bytes(format));
}

}  // namespace

// y = x W^T (+ bias) (+ y's old value when `accumulate`: the residual add) with W in GGUF blocks.
torch::Tensor block_linear(const torch::Tensor& x, const torch::Tensor& blocks, int64_t format,
                           const c10::optional<torch::Tensor>& bias, const c10::optional<torch::Tensor>& out) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 2, "x must be a 2-d float32 tensor");
  const int64_t rows = x.size(0), k = x.size(1), n = blocks.size(0);
  check_blocks(blocks, format, k);
  const torch::Tensor xc = x.contiguous();
  const bool accumulate = out.has_value();
  torch::Tensor y = accumulate ? *out : torch::empty({rows, n}, x.options());
  TORCH_CHECK(y.is_contiguous() && y.size(0) == rows && y.size(1) == n, "out must be a contiguous (rows, out_features) tensor");
  const int64_t row_bytes = blocks.size(1), nblocks = k / BLOCK;
  const uint8_t* w = blocks.data_ptr<uint8_t>();
  if (rows <= FEW_ROWS) {
    torch::Tensor target = accumulate ? torch::empty({rows, n}, x.options()) : y;
    const float* xp = xc.data_ptr<float>();
    float* tp = target.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t n0, int64_t n1) { few_rows(format, w, row_bytes, nblocks, xp, k, rows, tp, n, n0, n1); });
    if (accumulate) y.add_(target);
  } else {
    const int64_t slice_rows = std::clamp<int64_t>(GEMM_SLICE_FLOATS / k, 16, 512);
    for (int64_t s0 = 0; s0 < n; s0 += slice_rows) {
      const int64_t s1 = std::min(n, s0 + slice_rows);
      torch::Tensor slice = torch::empty({s1 - s0, k}, x.options());
      float* sp = slice.data_ptr<float>();
      at::parallel_for(s0, s1, 4, [&](int64_t a, int64_t b) { dequantize_rows(format, w, row_bytes, nblocks, a, b, sp + (a - s0) * k); });
      torch::Tensor part = y.narrow(1, s0, s1 - s0);
      if (accumulate) part.addmm_(xc, slice.t());
      else at::mm_out(part, xc, slice.t());
    }
  }
  if (bias.has_value()) y.add_(*bias);
  return y;
}

// The fp32 weights of the given rows (all when `ids` is empty): embedding lookups and references.
torch::Tensor block_dequantize(const torch::Tensor& blocks, int64_t format, int64_t in_features, const torch::Tensor& ids) {
  check_blocks(blocks, format, in_features);
  const int64_t nblocks = in_features / BLOCK, row_bytes = blocks.size(1);
  const uint8_t* w = blocks.data_ptr<uint8_t>();
  if (ids.numel() == 0) {
    torch::Tensor out = torch::empty({blocks.size(0), in_features}, torch::kFloat32);
    float* op = out.data_ptr<float>();
    at::parallel_for(0, blocks.size(0), 64, [&](int64_t a, int64_t b) { dequantize_rows(format, w, row_bytes, nblocks, a, b, op + a * in_features); });
    return out;
  }
  const torch::Tensor idc = ids.to(torch::kLong).contiguous();
  const int64_t* ip = idc.data_ptr<int64_t>();
  torch::Tensor out = torch::empty({idc.numel(), in_features}, torch::kFloat32);
  float* op = out.data_ptr<float>();
  for (int64_t i = 0; i < idc.numel(); ++i) {
    TORCH_CHECK(ip[i] >= 0 && ip[i] < blocks.size(0), "row ", ip[i], " out of range");
    dequantize_rows(format, w, row_bytes, nblocks, ip[i], ip[i] + 1, op + i * in_features);
  }
  return out;
}

// RMSNorm of each row: x / sqrt(mean(x^2) + eps) * weight.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 2 && weight.numel() == x.size(1), "rms_norm: (rows, d) x and (d,) weight");
  const torch::Tensor xc = x.contiguous(), wc = weight.contiguous();
  torch::Tensor y = torch::empty_like(xc);
  const int64_t d = x.size(1);
  const float* xp = xc.data_ptr<float>();
  const float* wp = wc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  for (int64_t r = 0; r < x.size(0); ++r) {
    const float* xr = xp + r * d;
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / d + eps));
    for (int64_t j = 0; j < d; ++j) yp[r * d + j] = xr[j] * inv * wp[j];
  }
  return y;
}

namespace {
void rms_head(float* v, const float* w, int64_t hd, double eps) {
  double ss = 0.0;
  for (int64_t j = 0; j < hd; ++j) ss += static_cast<double>(v[j]) * v[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / hd + eps));
  for (int64_t j = 0; j < hd; ++j) v[j] = v[j] * inv * w[j];
}

// transformers' rotate_half RoPE of one head vector, in place (cos/sin: (head_dim,), halves repeated).
void rope_head(float* v, const float* cos, const float* sin, int64_t hd) {
  const int64_t half = hd / 2;
  for (int64_t j = 0; j < half; ++j) {
    const float a = v[j], b = v[j + half];
    v[j] = a * cos[j] - b * sin[j];
    v[j + half] = b * cos[j + half] + a * sin[j + half];
  }
}
}  // namespace

// Split a fused qkv projection (rows, (H + 2 KV) * hd): queries rotated into a new (rows, H, hd)
// tensor; keys rotated and values written into the layer's cache slots at..at+rows. Qwen3's per-head
// query/key norms come first when given.
torch::Tensor rope_store(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                         torch::Tensor keys, torch::Tensor values, int64_t at, int64_t n_heads,
                         const c10::optional<torch::Tensor>& q_norm, const c10::optional<torch::Tensor>& k_norm, double eps) {
  const int64_t rows = qkv.size(0), n_kv = keys.size(0), hd = keys.size(2);
  TORCH_CHECK(qkv.dtype() == torch::kFloat32 && qkv.is_contiguous() && qkv.size(1) == (n_heads + 2 * n_kv) * hd, "rope_store: qkv shape");
  TORCH_CHECK(keys.stride(2) == 1 && values.stride(2) == 1 && keys.stride(1) == hd && values.stride(1) == hd, "rope_store: cache rows must be contiguous");
  TORCH_CHECK(at >= 0 && at + rows <= keys.size(1), "rope_store: slots ", at, "..", at + rows, " outside the cache");
  const torch::Tensor c = cos.contiguous(), s = sin.contiguous();
  TORCH_CHECK(c.numel() == rows * hd && s.numel() == rows * hd, "rope_store: cos/sin must be (rows, head_dim)");
  torch::Tensor q = torch::empty({rows, n_heads, hd}, qkv.options());
  const float* src = qkv.data_ptr<float>();
  float* qp = q.data_ptr<float>();
  float* kp = keys.data_ptr<float>();
  float* vp = values.data_ptr<float>();
  const float* qn = q_norm.has_value() ? q_norm->data_ptr<float>() : nullptr;
  const float* kn = k_norm.has_value() ? k_norm->data_ptr<float>() : nullptr;
  const int64_t width = qkv.size(1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* cr = c.data_ptr<float>() + r * hd;
    const float* sr = s.data_ptr<float>() + r * hd;
    const float* row = src + r * width;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* dst = qp + (r * n_heads + h) * hd;
      std::memcpy(dst, row + h * hd, hd * sizeof(float));
      if (qn) rms_head(dst, qn, hd, eps);
      rope_head(dst, cr, sr, hd);
    }
    for (int64_t g = 0; g < n_kv; ++g) {
      float* kd = kp + g * keys.stride(0) + (at + r) * hd;
      std::memcpy(kd, row + (n_heads + g) * hd, hd * sizeof(float));
      if (kn) rms_head(kd, kn, hd, eps);
      rope_head(kd, cr, sr, hd);
      std::memcpy(vp + g * values.stride(0) + (at + r) * hd, row + (n_heads + n_kv + g) * hd, hd * sizeof(float));
    }
  }
  return q;
}

namespace {
constexpr int64_t TILE = 32;  // cache slots scored at a time

struct Partial {  // one query's softmax state over a range of slots
  float max, sum;
};

float dot(const float* a, const float* b, int64_t n) {
#if LIVEKV_AVX2
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t j = 0;
  for (; j + 32 <= n; j += 32)
    for (int q = 0; q < 4; ++q) acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8 * q), _mm256_loadu_ps(b + j + 8 * q), acc[q]);
  for (; j + 8 <= n; j += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc[0]);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
#else
  float s = 0.0f;
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
#endif
}

void axpy(float a, const float* x, float* y, int64_t n) {
#if LIVEKV_AVX2
  const __m256 va = _mm256_set1_ps(a);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
  for (; j < n; ++j) y[j] += a * x[j];
#else
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
#endif
}

// acc += sum_j p[j] * v[j] over n value rows of hd floats: 64 accumulator lanes stay in registers
// over all rows (a load-add-store per row would wait on its own store).
void weighted_sum(const float* p, const float* v, int64_t n, int64_t hd, float* acc) {
  int64_t d = 0;
#if LIVEKV_AVX2
  for (; d + 64 <= hd; d += 64) {
    __m256 a[8];
    for (int q = 0; q < 8; ++q) a[q] = _mm256_loadu_ps(acc + d + 8 * q);
    for (int64_t j = 0; j < n; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      const float* vj = v + j * hd + d;
      for (int q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * q), a[q]);
    }
    for (int q = 0; q < 8; ++q) _mm256_storeu_ps(acc + d + 8 * q, a[q]);
  }
#endif
  for (; d < hd; ++d) {
    float a = acc[d];
    for (int64_t j = 0; j < n; ++j) a += p[j] * v[j * hd + d];
    acc[d] = a;
  }
}

void exp_inplace(float* v, int64_t n) {
#if LIVEKV_AVX2
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, exp_avx2(_mm256_loadu_ps(v + j)));
  for (; j < n; ++j) v[j] = std::exp(v[j]);
#else
  for (int64_t j = 0; j < n; ++j) v[j] = std::exp(v[j]);
#endif
}
}  // namespace

// Attention of `rows` queries (rows, H, hd) over the layer's cache slots [0, end) (keys and values
// (KV, capacity, hd)). Query r sees slot j when visible[r][j] (a (rows, end) bool tensor), or, without
// it, causally: j <= at + r. Grouped heads read each cached key and value once for the whole group.
// Work is split over kv heads and ranges of slots; partial softmaxes are merged at the end.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values, int64_t end,
                     int64_t at, const c10::optional<torch::Tensor>& visible, double scale) {
  const int64_t rows = q.size(0), n_heads = q.size(1), hd = q.size(2), n_kv = keys.size(0);
  TORCH_CHECK(q.is_contiguous() && q.dtype() == torch::kFloat32, "attend: q must be contiguous float32");
  TORCH_CHECK(n_heads % n_kv == 0 && keys.size(2) == hd && end <= keys.size(1), "attend: shapes");
  TORCH_CHECK(keys.stride(1) == hd && values.stride(1) == hd && keys.stride(2) == 1 && values.stride(2) == 1, "attend: cache rows must be contiguous");
  torch::Tensor mask;
  if (visible.has_value()) {
    mask = visible->to(torch::kBool).contiguous();
    TORCH_CHECK(mask.dim() == 2 && mask.size(0) == rows && mask.size(1) == end, "attend: visible must be (rows, end)");
  }
  const bool* mp = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  const int64_t group = n_heads / n_kv, nq = group * rows;  // queries per kv head
  const int64_t threads = at::get_num_threads();
  int64_t parts = std::max<int64_t>(1, (2 * threads + n_kv - 1) / n_kv);
  parts = std::max<int64_t>(1, std::min(parts, end / 128));
  const int64_t span = (end + parts - 1) / parts;
  std::vector<Partial> state(n_kv * parts * nq);
  std::vector<float> acc(n_kv * parts * nq * hd, 0.0f);
  const float* qp = q.data_ptr<float>();
  const float* kp = keys.data_ptr<float>();
  const float* vp = values.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, n_kv * parts, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores(nq * TILE);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t g = item / parts, part = item % parts;
      const int64_t s0 = part * span, s1 = std::min(end, s0 + span);
      Partial* st = state.data() + item * nq;
      float* ac = acc.data() + item * nq * hd;
      for (int64_t i = 0; i < nq; ++i) st[i] = {-std::numeric_limits<float>::infinity(), 0.0f};
      const float* kg = kp + g * keys.stride(0);
      const float* vg = vp + g * values.stride(0);
      for (int64_t t = s0; t < s1; t += TILE) {
        const int64_t n = std::min(TILE, s1 - t);
        for (int64_t i = 0; i < nq; ++i) {  // i = r * group + h: row r, head g * group + h
          const int64_t r = i / group, h = g * group + i % group;
          const float* qv = qp + (r * n_heads + h) * hd;
          float* sr = scores.data() + i * TILE;
          float tile_max = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j < n; ++j) {
            const bool seen = mp ? mp[r * end + t + j] : (t + j <= at + r);
            sr[j] = seen ? dot(qv, kg + (t + j) * hd, hd) * sc : -std::numeric_limits<float>::infinity();
            tile_max = std::max(tile_max, sr[j]);
          }
          if (tile_max == -std::numeric_limits<float>::infinity()) continue;
          const float new_max = std::max(st[i].max, tile_max);
          if (new_max > st[i].max && st[i].sum > 0.0f) {
            const float shrink = std::exp(st[i].max - new_max);
            st[i].sum *= shrink;
            for (int64_t d = 0; d < hd; ++d) ac[i * hd + d] *= shrink;
          }
          st[i].max = new_max;
          for (int64_t j = 0; j < n; ++j) sr[j] -= new_max;
          exp_inplace(sr, n);
          for (int64_t j = 0; j < n; ++j) {  // masked slots weigh 0 (AVX2's exp clamps -inf to a tiny value)
            const bool seen = mp ? mp[r * end + t + j] : (t + j <= at + r);
            sr[j] = seen ? sr[j] : 0.0f;
            st[i].sum += sr[j];
          }
          weighted_sum(sr, vg + t * hd, n, hd, ac + i * hd);
        }
      }
    }
  });
  torch::Tensor out = torch::zeros({rows, n_heads * hd}, q.options());
  float* op = out.data_ptr<float>();
  for (int64_t g = 0; g < n_kv; ++g) {
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t r = i / group, h = g * group + i % group;
      float best = -std::numeric_limits<float>::infinity();
      for (int64_t p = 0; p < parts; ++p) best = std::max(best, state[(g * parts + p) * nq + i].max);
      if (best == -std::numeric_limits<float>::infinity()) continue;  // sees no slot: zeros
      float total = 0.0f;
      float* dst = op + r * n_heads * hd + h * hd;
      for (int64_t p = 0; p < parts; ++p) {
        const Partial& s = state[(g * parts + p) * nq + i];
        if (s.sum == 0.0f) continue;
        const float w = std::exp(s.max - best);
        total += s.sum * w;
        axpy(w, acc.data() + ((g * parts + p) * nq + i) * hd, dst, hd);
      }
      const float inv = 1.0f / total;
      for (int64_t d = 0; d < hd; ++d) dst[d] *= inv;
    }
  }
  return out;
}

// silu(gate) * up for a fused (rows, 2F) gate/up projection.
torch::Tensor silu_mul(const torch::Tensor& gate_up) {
  TORCH_CHECK(gate_up.dtype() == torch::kFloat32 && gate_up.dim() == 2 && gate_up.size(1) % 2 == 0, "silu_mul: (rows, 2F) float32");
  const torch::Tensor gu = gate_up.contiguous();
  const int64_t rows = gu.size(0), f = gu.size(1) / 2;
  torch::Tensor y = torch::empty({rows, f}, gu.options());
  const float* src = gu.data_ptr<float>();
  float* dst = y.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = src + r * 2 * f;
    const float* u = g + f;
    float* o = dst + r * f;
    int64_t j = 0;
#if LIVEKV_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; j + 8 <= f; j += 8) {
      const __m256 gv = _mm256_loadu_ps(g + j);
      const __m256 e = exp_avx2(_mm256_sub_ps(zero, gv));
      _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + j)));
    }
#endif
    for (; j < f; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
  }
  return y;
}

bool has_avx2() { return LIVEKV_AVX2; }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("block_linear", &block_linear, "y = x W^T (+ bias) (+ out) with W in GGUF blocks");
  m.def("block_dequantize", &block_dequantize, "fp32 weights of the given rows (all when ids is empty)");
  m.def("rms_norm", &rms_norm, "RMSNorm of each row");
  m.def("rope_store", &rope_store, "queries rotated; keys rotated and values written into the cache");
  m.def("attend", &attend, "attention of a few queries over the cache, grouped heads read once");
  m.def("silu_mul", &silu_mul, "silu(gate) * up");
  m.def("has_avx2", &has_avx2, "whether the AVX2/FMA/F16C path was compiled in");
}
