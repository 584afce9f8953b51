// Image operations around the pipelines: Pillow-exact Lanczos resizing (against Pillow's own output), base64 and
// data-URL image sources, PNG decoding errors, and Canny edges on shapes whose edges are known.
#include <cmath>
#include <filesystem>
#include <regex>

#include "sana/error.h"
#include "sana/frontend/generation_params.h"
#include "sana/frontend/image_source.h"
#include "sana/io/config.h"
#include "sana/io/edges.h"
#include "sana/io/image.h"
#include "sana/io/resize.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

at::Tensor to_hwc_u8(const at::Tensor& chw) {
  return at::round(chw * 255).to(at::kByte).permute({1, 2, 0}).contiguous();
}

}  // namespace

TEST(Resize, LanczosEqualsPillowToTheByte) {
  const std::string dir = sana::test::project_fixture("resize_lanczos");
  const at::Tensor source = to_hwc_u8(sana::load_png(dir + "/source.png"));
  const std::regex name(R"(lanczos_(\d+)x(\d+)\.png)");
  int checked = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string file = e.path().filename().string();
    if (!std::regex_match(file, m, name)) continue;
    SCOPED_TRACE(file);
    const int w = std::stoi(m[1]), h = std::stoi(m[2]);
    const at::Tensor expected = to_hwc_u8(sana::load_png(e.path().string()));
    const at::Tensor actual = sana::resize_lanczos_u8(source, h, w);
    ASSERT_EQ(actual.sizes(), expected.sizes());
    EXPECT_TRUE(at::equal(actual, expected)) << "max diff "
                                             << (actual.to(at::kInt) - expected.to(at::kInt)).abs().max().item<int>();
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(ImageSource, Base64AndDataUrls) {
  EXPECT_EQ(sana::base64_encode("Man"), "TWFu");
  EXPECT_EQ(sana::base64_encode("Ma"), "TWE=");
  EXPECT_EQ(sana::base64_decode("TWE=", "x"), "Ma");
  EXPECT_EQ(sana::base64_decode("TW\nE", "x"), "Ma");
  const std::string png = sana::read_text_file(sana::test::fixture("pipeline_sana_controlnet_tiny/control0.png"));
  const at::Tensor from_file = sana::load_png(sana::test::fixture("pipeline_sana_controlnet_tiny/control0.png"));
  EXPECT_TRUE(at::equal(sana::load_image_source(sana::base64_encode(png), "control_image", false), from_file));
  EXPECT_TRUE(at::equal(
      sana::load_image_source("data:image/png;base64," + sana::base64_encode(png), "control_image", false), from_file));
  auto field_of = [](const std::string& source, bool files) {
    try {
      sana::load_image_source(source, "init_image", files);
    } catch (const sana::ParamError& e) {
      return e.field() + ": " + e.message();
    }
    return std::string("no error");
  };
  EXPECT_NE(field_of("@@not base64@@", false).find("init_image: is not valid base64"), std::string::npos);
  EXPECT_NE(field_of(sana::base64_encode("GIF89a...."), false).find("init_image: is not a PNG"), std::string::npos);
  EXPECT_NE(field_of(sana::base64_encode(png.substr(0, 40)), false).find("damaged or truncated"), std::string::npos);
  // A server never reads its own files: a path is taken as (bad) inline data there.
  EXPECT_NE(field_of("/etc/passwd", false).find("init_image: is not a PNG image"), std::string::npos);
  EXPECT_NE(field_of("/no/such.png", true).find("not a readable file"), std::string::npos);
}

TEST(Png, DeclaredSizeIsBoundedBeforeAllocation) {
  // A valid PNG header declaring 20000 x 20000 pixels, then nothing: refused by the size check, not by running out
  // of memory or data.
  std::string png = sana::encode_png(at::zeros({3, 2, 2}));
  const auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) png[at + i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  };
  put32(16, 20000), put32(20, 20000);  // IHDR width, height (the CRC no longer matches: libpng is told to warn)
  try {
    sana::decode_png(png, "big.png");
    FAIL();
  } catch (const sana::Error& e) {
    EXPECT_TRUE(std::string(e.what()).find("big.png") != std::string::npos) << e.what();
  }
}

// Text chunks: ASCII in tEXt; anything else in iTXt as UTF-8 (tEXt is Latin-1 by the PNG standard, so UTF-8 bytes in
// it read back as "cafÃ©" elsewhere); both read back as the UTF-8 given.
TEST(Png, TextBeyondAsciiTravelsAsUtf8InITXt) {
  const std::string utf8 = "caf\xc3\xa9 \xe2\x98\x95, Steps: 1";
  const std::string png = sana::encode_png(at::zeros({3, 2, 2}), {{"parameters", utf8}, {"Software", "sana"}});
  // The chunk type, then the keyword and its NUL: which chunk carries which key.
  EXPECT_NE(png.find(std::string("iTXtparameters") + '\0'), std::string::npos);
  EXPECT_NE(png.find(std::string("tEXtSoftware") + '\0'), std::string::npos);
  std::map<std::string, std::string> text;
  sana::decode_png(png, "text.png", &text);
  EXPECT_EQ(text["parameters"], utf8);
  EXPECT_EQ(text["Software"], "sana");
}

TEST(Canny, EdgesOfASquareAndNothingInFlatAreas) {
  at::Tensor img = at::zeros({3, 32, 32});
  img.narrow(1, 8, 16).narrow(2, 8, 16).fill_(1.0);  // a white square from (8, 8) to (23, 23)
  const at::Tensor e = sana::canny_edges(img);
  ASSERT_EQ(e.sizes(), img.sizes());
  const at::Tensor m = e[0];
  // The boundary rows/columns carry edges, the flat inside and outside carry none.
  EXPECT_GT(m.narrow(0, 7, 2).narrow(1, 10, 12).sum().item<float>(), 10);
  EXPECT_EQ(m.narrow(0, 12, 8).narrow(1, 12, 8).sum().item<float>(), 0);
  EXPECT_EQ(m.narrow(0, 0, 4).sum().item<float>(), 0);
  EXPECT_TRUE(at::equal(e[0], e[1]) && at::equal(e[1], e[2]));
  EXPECT_EQ(sana::canny_edges(at::full({3, 16, 16}, 0.5)).sum().item<float>(), 0);
}

// JPEG input (control and init images): libjpeg's decode equals Pillow's (which diffusers' load_image calls) on files
// Pillow wrote: RGB at 4:2:0 and 4:4:4, and grey (replicated to RGB as Pillow's convert("RGB")).
TEST(Jpeg, DecodesAsPillowDoes) {
  for (const std::string name : {"rgb420", "rgb444", "gray"}) {
    SCOPED_TRACE(name);
    const std::string bytes = sana::read_text_file(sana::test::project_fixture("jpeg_pillow") + "/" + name + ".jpg");
    ASSERT_TRUE(sana::is_jpeg(bytes));
    const at::Tensor ours = sana::decode_jpeg(bytes, name);
    const at::Tensor pillow = sana::load_png(sana::test::project_fixture("jpeg_pillow") + "/" + name + ".decoded.png");
    ASSERT_EQ(ours.sizes(), pillow.sizes());
    EXPECT_LE((ours - pillow).abs().max().item<float>() * 255, 0.5f);
    // The same through the front ends' image sources (a data URL as a JSON API receives it).
    const at::Tensor via_source =
        sana::load_image_source("data:image/jpeg;base64," + sana::base64_encode(bytes), "init_image", false);
    EXPECT_TRUE(at::equal(via_source, ours));
  }
  const std::string bytes = sana::read_text_file(sana::test::project_fixture("jpeg_pillow") + "/rgb420.jpg");
  EXPECT_NE(sana::test::error_of([&] { sana::decode_jpeg(bytes, "x.jpg", 40); }).find("x.jpg is 53x37, more than the limit of 40"),
            std::string::npos);
  EXPECT_NE(sana::test::error_of([&] { sana::decode_jpeg(bytes.substr(0, 300), "cut.jpg"); }).find("cut.jpg is a broken"),
            std::string::npos);
}

// WebP input as Pillow (diffusers' load_image) decodes it: lossy, lossless (= the source exactly) and with alpha
// (dropped); the header's size is checked before decoding; a cut file is an error naming the source.
TEST(Webp, DecodesAsPillowDoes) {
  const std::string dir = sana::test::project_fixture("webp_pillow") + "/";
  for (const std::string name : {"lossy", "lossless", "alpha"}) {
    SCOPED_TRACE(name);
    const std::string bytes = sana::read_text_file(dir + name + ".webp");
    ASSERT_TRUE(sana::is_webp(bytes));
    const at::Tensor ours = sana::decode_webp(bytes, name);
    const at::Tensor pillow = sana::load_png(dir + name + ".decoded.png");
    ASSERT_EQ(ours.sizes(), pillow.sizes());
    EXPECT_LE((ours - pillow).abs().max().item<float>() * 255, 0.5f);
    const at::Tensor via_source =
        sana::load_image_source("data:image/webp;base64," + sana::base64_encode(bytes), "init_image", false);
    EXPECT_TRUE(at::equal(via_source, ours));
  }
  EXPECT_TRUE(at::equal(sana::decode_webp(sana::read_text_file(dir + "lossless.webp"), "lossless"),
                        sana::load_png(dir + "source.png")));
  const std::string bytes = sana::read_text_file(dir + "lossy.webp");
  EXPECT_NE(sana::test::error_of([&] { sana::decode_webp(bytes, "x.webp", 40); }).find("x.webp is 41x29, more than the limit of 40"),
            std::string::npos);
  EXPECT_NE(sana::test::error_of([&] { sana::load_image_source(sana::base64_encode(bytes.substr(0, 60)), "control_image", false); })
                .find("control_image: is a broken"),
            std::string::npos);
}

// WebP output: quality 100 is lossless (the decode gives back the 8-bit image exactly); lossy stays close.
TEST(Webp, EncodesLosslessExactlyAndLossyClose) {
  const at::Tensor image = sana::load_png(sana::test::project_fixture("webp_pillow") + "/source.png");
  const std::string lossless = sana::encode_webp(image, 100);
  ASSERT_TRUE(sana::is_webp(lossless));
  EXPECT_TRUE(at::equal(sana::decode_webp(lossless, "lossless"), image));
  const auto psnr = [&](int quality) {
    const at::Tensor lossy = sana::decode_webp(sana::encode_webp(image, quality), "lossy");
    return -10 * std::log10((lossy - image).pow(2).mean().item<double>());
  };
  // The source carries +-15 of pixel noise, which 4:2:0 lossy coding mostly drops: ~27 dB at quality 90.
  EXPECT_GT(psnr(90), 25.0);
  EXPECT_GT(psnr(90), psnr(10) + 3) << "quality changes nothing";
  EXPECT_NE(sana::test::error_of([&] { sana::encode_webp(image, 101); }).find("webp quality"), std::string::npos);
}
