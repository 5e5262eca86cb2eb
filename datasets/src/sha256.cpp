#include "modiff/datasets/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "modiff/common/error.h"
#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::datasets {

namespace {

using Digest = std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)>;

Digest new_digest() {
  Digest ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("sha256: OpenSSL init failed");
  return ctx;
}

std::string hex_digest(Digest& ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw Error(path + ": cannot open file (" + std::strerror(errno) + ")");
  Digest ctx = new_digest();
  std::vector<unsigned char> buffer(1 << 20);
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), f.get())) > 0)
    EVP_DigestUpdate(ctx.get(), buffer.data(), n);
  if (std::ferror(f.get())) throw Error(path + ": read error while hashing");
  return hex_digest(ctx);
}

std::string sha256_rows(const Dataset& d) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the row digest is defined on little-endian bytes");
  Digest ctx = new_digest();
  auto add = [&](const auto& v) { EVP_DigestUpdate(ctx.get(), v.data(), v.size() * sizeof(v[0])); };
  add(d.observations);
  add(d.actions);
  add(d.rewards);
  add(d.terminals);
  add(d.timeouts);
  add(d.next_observations);
  return hex_digest(ctx);
}

}  // namespace modiff::datasets
