// A direct convolution for a first layer of one input channel and its weight gradient, as XLA FFI handlers
// (experiments.conv1_ffi), valid correlation, stride 1:
//   conv1_direct:       x (N, H, W, 1), w (K, K, 1, O <= 32) -> y (N, H - K + 1, W - K + 1, O)
//   conv1_weight_grad:  x (N, H, W, 1), g (N, OH, OW, O <= 32) -> dw (H - OH + 1, W - OW + 1, 1, O), square
// float32 throughout. Each output pixel's O channels are accumulated as 32 lanes (w or g padded with zeros), BLOCK
// output columns at a time, so that the accumulators stay in vector registers; the batch is split over `threads`
// threads (the weight gradient sums their partial sums).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
constexpr int LANES = 32;

template <int BLOCK>
static void columns(const float* x, const float* wp, float* y, int64_t n, int64_t oh, int64_t ow0, int64_t H,
                    int64_t W, int64_t K, int64_t O) {
  const int64_t OH = H - K + 1, OW = W - K + 1;
  alignas(64) float acc[BLOCK][LANES] = {};
  for (int64_t kh = 0; kh < K; ++kh) {
    const float* xr = x + (n * H + oh + kh) * W + ow0;
    for (int64_t kw = 0; kw < K; ++kw) {
      const float* wr = wp + (kh * K + kw) * LANES;
      for (int b = 0; b < BLOCK; ++b) {
        const float v = xr[b + kw];
        for (int o = 0; o < LANES; ++o) acc[b][o] += v * wr[o];
      }
    }
  }
  float* yr = y + ((n * OH + oh) * OW + ow0) * O;
  for (int b = 0; b < BLOCK; ++b) std::memcpy(yr + b * O, acc[b], O * sizeof(float));
}

static void images(const float* x, const float* wp, float* y, int64_t n0, int64_t n1, int64_t H, int64_t W,
                   int64_t K, int64_t O) {
  const int64_t OH = H - K + 1, OW = W - K + 1;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t oh = 0; oh < OH; ++oh) {
      int64_t ow = 0;
      for (; ow + 4 <= OW; ow += 4) columns<4>(x, wp, y, n, oh, ow, H, W, K, O);
      for (; ow < OW; ++ow) columns<1>(x, wp, y, n, oh, ow, H, W, K, O);
    }
}

static ffi::Error Conv1Direct(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                              int64_t threads) {
  const auto xd = x.dimensions(), wd = w.dimensions();
  const int64_t N = xd[0], H = xd[1], W = xd[2], K = wd[0], O = wd[3];
  if (xd.size() != 4 || xd[3] != 1 || wd.size() != 4 || wd[1] != K || wd[2] != 1 || O > LANES || H < K || W < K)
    return ffi::Error::InvalidArgument("conv1_direct: x (N, H, W, 1), w (K, K, 1, O <= 32), H and W >= K");
  std::vector<float> wp(K * K * LANES, 0.f);  // w with its channels padded to LANES
  for (int64_t t = 0; t < K * K; ++t) std::copy_n(w.typed_data() + t * O, O, wp.data() + t * LANES);
  const int64_t parts = std::max<int64_t>(1, std::min(threads, N));
  std::vector<std::thread> pool;
  for (int64_t p = 1; p < parts; ++p)
    pool.emplace_back(images, x.typed_data(), wp.data(), y->typed_data(), N * p / parts, N * (p + 1) / parts, H, W,
                      K, O);
  images(x.typed_data(), wp.data(), y->typed_data(), 0, N / parts, H, W, K, O);
  for (auto& t : pool) t.join();
  return ffi::Error::Success();
}

static void weight_grad_images(const float* x, const float* g, float* dw, int64_t n0, int64_t n1, int64_t H,
                               int64_t W, int64_t K, int64_t O) {
  const int64_t OH = H - K + 1, OW = W - K + 1;
  alignas(64) float gp[LANES] = {};
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        std::memcpy(gp, g + ((n * OH + oh) * OW + ow) * O, O * sizeof(float));
        for (int64_t kh = 0; kh < K; ++kh) {
          const float* xr = x + (n * H + oh + kh) * W + ow;
          for (int64_t kw = 0; kw < K; ++kw) {
            const float v = xr[kw];
            float* acc = dw + (kh * K + kw) * LANES;
            for (int o = 0; o < LANES; ++o) acc[o] += v * gp[o];
          }
        }
      }
}

static ffi::Error Conv1WeightGrad(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> dw,
                                  int64_t threads) {
  const auto xd = x.dimensions(), gd = g.dimensions();
  const int64_t N = xd[0], H = xd[1], W = xd[2], O = gd[3], K = H - gd[1] + 1;
  if (xd.size() != 4 || xd[3] != 1 || gd.size() != 4 || gd[0] != N || W - gd[2] + 1 != K || K < 1 || O > LANES)
    return ffi::Error::InvalidArgument("conv1_weight_grad: x (N, H, W, 1), g (N, H - K + 1, W - K + 1, O <= 32)");
  const int64_t parts = std::max<int64_t>(1, std::min(threads, N));
  std::vector<float> partial(parts * K * K * LANES, 0.f);
  std::vector<std::thread> pool;
  for (int64_t p = 1; p < parts; ++p)
    pool.emplace_back(weight_grad_images, x.typed_data(), g.typed_data(), partial.data() + p * K * K * LANES,
                      N * p / parts, N * (p + 1) / parts, H, W, K, O);
  weight_grad_images(x.typed_data(), g.typed_data(), partial.data(), 0, N / parts, H, W, K, O);
  for (auto& t : pool) t.join();
  float* out = dw->typed_data();
  for (int64_t t = 0; t < K * K; ++t)
    for (int64_t o = 0; o < O; ++o) {
      float sum = 0.f;
      for (int64_t p = 0; p < parts; ++p) sum += partial[(p * K * K + t) * LANES + o];
      out[t * O + o] = sum;
    }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(conv1_weight_grad, Conv1WeightGrad,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(conv1_direct, Conv1Direct,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("threads"));
