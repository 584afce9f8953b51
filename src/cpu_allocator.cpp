// LibTorch's CPU allocator, replaced for large blocks (runtime.h, install_cpu_allocator; docs/PERFORMANCE.md,
// "Large activations on huge pages").
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>

#include "sana/runtime.h"

namespace sana {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
// Below this glibc's heap serves the block (configure_runtime keeps it from trimming); at and above it glibc would
// mmap and munmap on every allocation, so each large activation is page-faulted in 4 KiB at a time.
constexpr size_t kLargeBlock = size_t{32} << 20;
constexpr size_t kAlignment = 64;  // as LibTorch's default CPU allocator

// Large blocks by data pointer -> their mapping: LibTorch's raw deallocation hands back only the pointer. Never
// destroyed, so that a tensor freed during the process's static destruction still finds it.
struct LargeBlocks {
  std::mutex mutex;
  std::unordered_map<void*, std::pair<void*, size_t>> mappings;
};
LargeBlocks& large_blocks() {
  static auto* blocks = new LargeBlocks;
  return *blocks;
}

void free_block(void* ptr) {
  if (!ptr) return;
  {
    LargeBlocks& large = large_blocks();
    std::lock_guard<std::mutex> lock(large.mutex);
    const auto it = large.mappings.find(ptr);
    if (it != large.mappings.end()) {
      munmap(it->second.first, it->second.second);
      large.mappings.erase(it);
      return;
    }
  }
  std::free(ptr);
}

class HugePageCPUAllocator final : public c10::Allocator {
 public:
  // LibTorch 1.13 declares allocate() const, 2.x non-const: both spellings, one body.
  c10::DataPtr allocate(size_t n) const { return allocate_block(n); }
  c10::DataPtr allocate(size_t n) { return allocate_block(n); }
  c10::DeleterFnPtr raw_deleter() const { return &free_block; }
  // LibTorch 2.x asks allocators to copy their own blocks.
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }

 private:
  static c10::DataPtr allocate_block(size_t n) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &free_block, cpu};
    if (n < kLargeBlock) {
      void* ptr = nullptr;
      if (posix_memalign(&ptr, kAlignment, n) != 0) throw std::bad_alloc();
      return {ptr, ptr, &free_block, cpu};
    }
    // A mapping aligned to 2 MiB, so the kernel can back it with huge pages (one fault per 2 MiB, fewer TLB misses).
    const size_t length = (n + kHugePage - 1) / kHugePage * kHugePage + kHugePage;
    void* raw = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    auto* data = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) / kHugePage * kHugePage);
    madvise(data, length - (data - static_cast<char*>(raw)), MADV_HUGEPAGE);
    {
      LargeBlocks& large = large_blocks();
      std::lock_guard<std::mutex> lock(large.mutex);
      large.mappings[data] = {raw, length};
    }
    return {data, data, &free_block, cpu};
  }
};

}  // namespace

void install_cpu_allocator() {
  static auto* allocator = new HugePageCPUAllocator;  // outlives every tensor, as LibTorch's own allocator does
  c10::SetCPUAllocator(allocator, /*priority=*/1);
}

}  // namespace sana
