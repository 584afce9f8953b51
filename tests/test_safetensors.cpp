// safetensors reader/writer: round trips, zero-copy mapping, sharded checkpoints, and one test per malformation.
#include <sys/stat.h>

#include <fstream>

#include "sana/error.h"
#include "sana/io/safetensors.h"
#include "test_util.h"

using sana::Checkpoint;
using sana::SafetensorsFile;
using sana::test::TempDir;

namespace {

// Writes an arbitrary file: 8-byte header length (or `declared_len`), header text, data bytes.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               int64_t declared_len = -1) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = declared_len >= 0 ? static_cast<uint64_t>(declared_len) : header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header << data;
}

// Expects opening `path` to throw a sana::Error whose message contains the path and every fragment.
void expect_open_error(const std::string& path, const std::vector<std::string>& fragments) {
  try {
    SafetensorsFile::open(path);
    FAIL() << "expected an error for " << path;
  } catch (const sana::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtypeAndMetadata) {
  TempDir dir;
  at::manual_seed(0);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f64", at::randn({3, 2}, at::kDouble)},
      {"f32", at::randn({4, 5, 6})},
      {"f16", at::randn({7}).to(at::kHalf)},
      {"bf16", at::randn({2, 3}).to(at::kBFloat16)},
      {"i64", at::randint(-1000000, 1000000, {5}, at::kLong)},
      {"i32", at::randint(-1000, 1000, {2, 2}, at::kInt)},
      {"i16", at::randint(-100, 100, {3}, at::kShort)},
      {"i8", at::randint(-100, 100, {3}, at::kChar)},
      {"u8", at::randint(0, 255, {9}, at::kByte)},
      {"bool", at::randint(0, 2, {4}, at::kLong).to(at::kBool)},
      {"scalar", at::scalar_tensor(3.5)},
      {"empty", at::empty({0, 3})},
      {"strided", at::randn({6, 4}).t()},  // non-contiguous input is stored contiguous
  };
  const std::string path = dir.file("all.safetensors");
  sana::save_safetensors(path, tensors, {{"format", "pt"}, {"note", "hello"}});

  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at("note"), "hello");
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const at::Tensor back = file->get(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(back, t.contiguous())) << name;
  }
  // Nothing temporary is left next to the file.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) entries += 1, (void)e;
  EXPECT_EQ(entries, 1);
}

TEST(Safetensors, F32IsAZeroCopyViewAndCopyOnWrite) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const at::Tensor w = at::arange(16, at::kFloat).view({4, 4});
  sana::save_safetensors(path, {{"w", w}});
  {
    auto file = SafetensorsFile::open(path);
    at::Tensor a = file->get("w"), b = file->get("w");
    EXPECT_EQ(a.data_ptr(), b.data_ptr()) << "both reads should view the same mapped bytes";
    a.mul_(-1);  // private mapping: visible through the mapping, never written to the file
    EXPECT_TRUE(at::equal(b, -w));
  }
  EXPECT_TRUE(at::equal(SafetensorsFile::open(path)->get("w"), w));
}

TEST(Safetensors, TensorOutlivesFileObject) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  sana::save_safetensors(path, {{"w", at::ones({1000})}});
  at::Tensor t = SafetensorsFile::open(path)->get("w");  // the file object is gone, the mapping must not be
  EXPECT_EQ(t.sum().item<float>(), 1000.0f);
}

TEST(Safetensors, MisalignedDataIsCopied) {
  TempDir dir;
  const std::string path = dir.file("odd.safetensors");
  // A 1-byte U8 tensor first makes the F32 tensor start at an odd address.
  float v[2] = {1.5f, -2.0f};
  std::string data(1, '\x07');
  data.append(reinterpret_cast<const char*>(v), sizeof(v));
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  write_raw(path, header, data);
  auto file = SafetensorsFile::open(path);
  EXPECT_TRUE(at::equal(file->get("b"), at::tensor({1.5f, -2.0f})));
  EXPECT_EQ(file->get("a").item<uint8_t>(), 7);
}

TEST(Safetensors, ShardedCheckpoint) {
  TempDir dir;
  sana::save_safetensors(dir.file("model-00001-of-00002.safetensors"), {{"a", at::ones({2})}, {"b", at::zeros({3})}});
  sana::save_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"c", at::full({4}, 2.0)}});
  std::ofstream(dir.file("model.safetensors.index.json"))
      << R"({"metadata":{"total_size":36},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
      << R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})";
  const Checkpoint ckpt = Checkpoint::open_in_directory(dir.path().string(), "model");
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(at::equal(ckpt.get("c"), at::full({4}, 2.0)));
  EXPECT_EQ(ckpt.metadata().at("total_size"), "36");
  EXPECT_NE(ckpt.file_of("c").find("00002"), std::string::npos);
}

TEST(Safetensors, IndexNamingMissingShardIsAnError) {
  TempDir dir;
  sana::save_safetensors(dir.file("m-1.safetensors"), {{"a", at::ones({2})}});
  const std::string index = dir.file("m.safetensors.index.json");
  std::ofstream(index) << R"({"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}})";
  try {
    Checkpoint::open(index);
    FAIL();
  } catch (const sana::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(index), std::string::npos) << msg;
    EXPECT_NE(msg.find("m-2.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  }
}

TEST(Safetensors, IndexMappingTensorToWrongShardIsAnError) {
  TempDir dir;
  sana::save_safetensors(dir.file("m-1.safetensors"), {{"a", at::ones({2})}});
  const std::string index = dir.file("m.safetensors.index.json");
  std::ofstream(index) << R"({"weight_map":{"a":"m-1.safetensors","zz":"m-1.safetensors"}})";
  EXPECT_THROW(
      {
        try {
          Checkpoint::open(index);
        } catch (const sana::Error& e) {
          EXPECT_NE(std::string(e.what()).find("'zz'"), std::string::npos) << e.what();
          throw;
        }
      },
      sana::Error);
}

TEST(Safetensors, MissingDirectoryCheckpointNamesWhatWasExpected) {
  TempDir dir;
  try {
    Checkpoint::open_in_directory(dir.path().string(), "diffusion_pytorch_model");
    FAIL();
  } catch (const sana::Error& e) {
    EXPECT_NE(std::string(e.what()).find("diffusion_pytorch_model.safetensors"), std::string::npos) << e.what();
  }
}

// ---- one test per malformation class -------------------------------------------------------------------------
TEST(SafetensorsMalformed, ShorterThanEightBytes) {
  TempDir dir;
  const std::string path = dir.file("short.safetensors");
  std::ofstream(path, std::ios::binary) << "abc";
  expect_open_error(path, {"shorter than the 8-byte"});
}

TEST(SafetensorsMalformed, AbsurdHeaderLength) {
  TempDir dir;
  const std::string path = dir.file("huge.safetensors");
  write_raw(path, "{}", "", int64_t{1} << 40);
  expect_open_error(path, {"exceeds the limit"});
}

TEST(SafetensorsMalformed, HeaderPastEndOfFile) {
  TempDir dir;
  const std::string path = dir.file("past.safetensors");
  write_raw(path, "{}", "", 1000);
  expect_open_error(path, {"runs past the end"});
}

TEST(SafetensorsMalformed, InvalidJson) {
  TempDir dir;
  const std::string path = dir.file("json.safetensors");
  write_raw(path, R"({"a": {"dtype": "F32", )", "");
  expect_open_error(path, {"not valid JSON"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  TempDir dir;
  const std::string path = dir.file("dtype.safetensors");
  write_raw(path, R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0'));
  expect_open_error(path, {"'w'", "unknown dtype 'F8_E4M3'"});
}

TEST(SafetensorsMalformed, ShapeTimesDtypeDoesNotMatchByteRange) {
  TempDir dir;
  const std::string path = dir.file("size.safetensors");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", std::string(20, '\0'));
  expect_open_error(path, {"'w'", "holds 20 bytes", "needs 24"});
}

TEST(SafetensorsMalformed, OffsetsOutOfRange) {
  TempDir dir;
  const std::string path = dir.file("range.safetensors");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'));
  expect_open_error(path, {"'w'", "out of range"});
}

// 2^31 x 2^31 x 4 bytes is 2^64: a product that wraps to 0 must not pass for an empty tensor; 2^32 x 2^32 wraps the
// element count itself. Products are taken in order, as PyTorch allocates: a leading 0 makes the tensor empty.
TEST(SafetensorsMalformed, ShapeWhoseByteCountOverflows) {
  TempDir dir;
  for (const std::string shape : {"[2147483648,2147483648]", "[4294967296,4294967296]", "[4611686018427387904,8]",
                                  "[4294967296,4294967296,0]"}) {
    SCOPED_TRACE(shape);
    const std::string path = dir.file("wrap.safetensors");
    write_raw(path, R"({"w":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,0]}})", "");
    expect_open_error(path, {"'w'", "more bytes than a 64-bit size can count"});
  }
  const std::string path = dir.file("empty.safetensors");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", "");
  EXPECT_EQ(SafetensorsFile::open(path)->get("w").numel(), 0);
}

// Inputs are opened only if they are regular files: a named pipe would block the reader forever.
TEST(SafetensorsMalformed, NamedPipeIsRefusedWithoutWaiting) {
  TempDir dir;
  const std::string path = dir.file("pipe.safetensors");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  expect_open_error(path, {"not a regular file"});
}

TEST(SafetensorsMalformed, OverlappingRanges) {
  TempDir dir;
  const std::string path = dir.file("overlap.safetensors");
  write_raw(path,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(12, '\0'));
  expect_open_error(path, {"'b'", "overlaps"});
}

TEST(SafetensorsMalformed, GapBetweenRanges) {
  TempDir dir;
  const std::string path = dir.file("gap.safetensors");
  write_raw(path,
            R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
            std::string(12, '\0'));
  expect_open_error(path, {"gap of 4 bytes", "'b'"});
}

TEST(SafetensorsMalformed, TrailingBytesAfterLastTensor) {
  TempDir dir;
  const std::string path = dir.file("trail.safetensors");
  write_raw(path, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(10, '\0'));
  expect_open_error(path, {"6 unused bytes"});
}

TEST(SafetensorsMalformed, DuplicateNames) {
  TempDir dir;
  const std::string path = dir.file("dup.safetensors");
  write_raw(path,
            R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            std::string(8, '\0'));
  expect_open_error(path, {"'a' appears twice"});
}

TEST(SafetensorsMalformed, EntryWithoutFields) {
  TempDir dir;
  const std::string path = dir.file("fields.safetensors");
  write_raw(path, R"({"a":{"dtype":"F32","shape":[1]}})", "");
  expect_open_error(path, {"'a'", "data_offsets"});
}

TEST(SafetensorsWrite, FailedWriteLeavesNothingBehind) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/x.safetensors");
  EXPECT_THROW(sana::save_safetensors(path, {{"a", at::ones({2})}}), sana::Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsWrite, OverwriteIsAtomicReplace) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  sana::save_safetensors(path, {{"a", at::ones({2})}});
  sana::save_safetensors(path, {{"b", at::zeros({3})}});
  auto file = SafetensorsFile::open(path);
  EXPECT_FALSE(file->contains("a"));
  EXPECT_TRUE(file->contains("b"));
}

// After a tensor has been converted, its pages are dropped from memory (loading an fp32 file as bf16 never holds
// both whole); reading it again brings the same values back from the file, and the neighbours are untouched.
TEST(Safetensors, ReleasedTensorReadsBackFromTheFile) {
  sana::test::TempDir dir;
  const at::Tensor a = at::randn({1 << 20}), b = at::randn({3, 5});
  sana::save_safetensors(dir.file("m.safetensors"), {{"a", a}, {"b", b}});
  const auto ckpt = sana::Checkpoint::open(dir.file("m.safetensors"));
  const at::Tensor converted = ckpt.get("a").to(at::kBFloat16);
  ckpt.release("a");
  EXPECT_TRUE(at::equal(ckpt.get("a"), a));
  EXPECT_TRUE(at::equal(ckpt.get("b"), b));
  EXPECT_TRUE(at::equal(converted, a.to(at::kBFloat16)));
}
