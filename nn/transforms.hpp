// Seeded data augmentation on batches of images [n, C, H, W] (row-major floats), in place. Randomness comes
// only from the Generator passed in, so a batch's augmentation is a function of that generator's seed and
// stream (the experiments fork one per epoch and batch, which keeps resumed runs identical).
//  * random_crop_pad: pad by `padding` pixels of `fill` on every side, then crop H x W at a uniformly random
//    offset in [0, 2 padding]^2 (torchvision RandomCrop(size, padding), as the learned-confidence reference).
//  * cutout: with probability `prob` per image, set a size x size square (all channels) centred at a
//    uniformly random pixel, clipped at the borders, to `fill` (DeVries & Taylor, "Improved regularization
//    of convolutional neural networks with Cutout", 2017; applied with p = 0.5 as the reference).
// Neither changes the shape, and every output value is an input value or `fill`.
#pragma once

#include <cstdint>
#include <span>

#include "autodiff/random.hpp"

namespace sdeuq::nn {

void random_crop_pad(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                     int padding, Generator& gen, float fill = 0.0f);
void cutout(std::span<float> images, std::size_t n, std::size_t c, std::size_t h, std::size_t w, int size,
            double prob, Generator& gen, float fill = 0.0f);

}  // namespace sdeuq::nn
