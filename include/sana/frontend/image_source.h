#pragma once
// Images that front ends receive (PNG, JPEG or WebP): a file path on the command line, inline data in JSON APIs (a data URL
// "data:image/png;base64,..." or bare base64, as OpenAI and Automatic1111 clients send them).
#include <ATen/ATen.h>

#include <string>

#include "sana/io/image.h"

namespace sana {

// The image [3, H, W] in [0, 1]. `allow_files`: a source that is not inline data is a file path (the CLI); otherwise
// it must be inline (a server never reads its own files for a client). Sides over `max_side` are refused before
// decoding. Errors name `field`.
at::Tensor load_image_source(const std::string& source, const std::string& field, bool allow_files,
                             int max_side = kMaxImageSide);
// The file's bytes of such a source, undecoded (for reading a PNG's text chunks, say).
std::string image_source_bytes(const std::string& source, const std::string& field, bool allow_files);

// RFC 4648 base64 (padding optional on input; whitespace ignored). decode: Error naming `field` on bad input.
std::string base64_decode(const std::string& text, const std::string& field);
std::string base64_encode(const std::string& bytes);

}  // namespace sana
