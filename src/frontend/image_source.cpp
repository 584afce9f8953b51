// Image sources of the front ends (image_source.h).
#include "sana/frontend/image_source.h"

#include <filesystem>

#include "sana/error.h"
#include "sana/frontend/generation_params.h"
#include "sana/io/config.h"
#include "sana/io/image.h"

namespace sana {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // '-' and '_': the URL-safe alphabet
  if (c == '/' || c == '_') return 63;
  return -1;
}

}  // namespace

std::string base64_decode(const std::string& text, const std::string& field) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = sextet(c);
    if (v < 0 || padding > 0) throw ParamError(field, "is not valid base64 image data");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6 || padding > 2) throw ParamError(field, "is not valid base64 image data (truncated)");
  return out;
}

std::string base64_encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (i + 1 < bytes.size() ? static_cast<uint8_t>(bytes[i + 1]) << 8 : 0) |
                       (i + 2 < bytes.size() ? static_cast<uint8_t>(bytes[i + 2]) : 0);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kAlphabet[n & 63] : '=');
  }
  return out;
}

std::string image_source_bytes(const std::string& source, const std::string& field, bool allow_files) {
  if (source.empty()) throw ParamError(field, "is empty");
  if (source.rfind("data:", 0) == 0) {
    const size_t comma = source.find(',');
    if (comma == std::string::npos || source.substr(0, comma).find(";base64") == std::string::npos)
      throw ParamError(field, "is a data URL without base64 data");
    return base64_decode(source.substr(comma + 1), field);
  }
  if (allow_files) {
    if (!std::filesystem::is_regular_file(source)) throw ParamError(field, source + " is not a readable file");
    return read_text_file(source);
  }
  return base64_decode(source, field);
}

at::Tensor load_image_source(const std::string& source, const std::string& field, bool allow_files, int max_side) {
  const std::string bytes = image_source_bytes(source, field, allow_files);
  try {
    if (is_jpeg(bytes)) return decode_jpeg(bytes, field, max_side);
    if (is_webp(bytes)) return decode_webp(bytes, field, max_side);
    return decode_png(bytes, field, nullptr, max_side);
  } catch (const ParamError&) {
    throw;
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind(field + " ", 0) == 0) m = m.substr(field.size() + 1);
    throw ParamError(field, m);
  }
}

}  // namespace sana
