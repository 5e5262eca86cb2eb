#pragma once
// A small RAII layer over the HDF5 C API: open a file, list groups, read whole
// datasets as numeric arrays with their shape, read string attributes.
// Every failure becomes a modiff::Error naming the file and the key; HDF5's
// own error stack printing is switched off so the user sees one line.
#include <cstdint>
#include <string>
#include <vector>

namespace modiff::h5 {

template <typename T>
struct Array {
  std::vector<T> data;
  std::vector<uint64_t> shape;
  uint64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  uint64_t cols() const {
    uint64_t n = 1;
    for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
    return n;
  }
};

class File {
 public:
  static File open_read(const std::string& path);
  // Creates (truncates) a file for writing. Callers write to a temporary name
  // and rename it into place (modiff::write_atomically).
  static File create(const std::string& path);
  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();
  // Flushes and closes a file being written, throwing modiff::Error (with the system's reason: a full disk)
  // when HDF5 cannot; the destructor alone would drop that failure.
  void close();

  const std::string& path() const { return path_; }

  // Names of the direct children of `group` ("/" for the root), in name order.
  std::vector<std::string> children(const std::string& group = "/") const;
  bool exists(const std::string& key) const;

  // Reads a whole dataset converted to T (HDF5 converts between numeric types;
  // booleans stored as enums or uint8 read as 0/1).
  Array<double> read_f64(const std::string& key) const;
  Array<float> read_f32(const std::string& key) const;
  Array<uint8_t> read_u8(const std::string& key) const;

  // Writing: float datasets are chunked and deflate-compressed; booleans use
  // h5py's enum layout so numpy reads them as bool.
  void write_f32(const std::string& key, const float* data, const std::vector<uint64_t>& shape);
  void write_bool(const std::string& key, const uint8_t* data, uint64_t count);
  void create_group(const std::string& name);
  void set_attribute(const std::string& object, const std::string& name, const std::string& value);
  void set_attribute(const std::string& object, const std::string& name, double value);
  void set_attribute(const std::string& object, const std::string& name, long long value);
  // Datatype class of a dataset: "float", "integer", "bool" (enum/bool), "string" or "other".
  std::string type_class(const std::string& key) const;
  std::vector<uint64_t> shape(const std::string& key) const;

  // String (or numeric, formatted) attribute of an object; throws if missing.
  std::string attribute(const std::string& object, const std::string& name) const;
  bool has_attribute(const std::string& object, const std::string& name) const;

 private:
  File(long long id, std::string path) : id_(id), path_(std::move(path)) {}
  std::string where(const std::string& key) const;
  long long id_ = -1;
  std::string path_;
  bool watched_ = false;  // a file opened for reading counts toward the read deadline (hdf5_file.cpp)
};

}  // namespace modiff::h5
