#include "modiff/datasets/hdf5_file.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "modiff/common/available_memory.h"
#include "modiff/common/environment.h"
#include "modiff/common/error.h"

namespace modiff::h5 {
namespace {

// HDF5 prints its whole error stack on stderr by default; modiff reports one line.
void silence_hdf5_errors() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

// Closes an HDF5 handle of any kind when it leaves scope.
struct Handle {
  hid_t id;
  explicit Handle(hid_t i) : id(i) {}
  ~Handle() {
    if (id >= 0) H5Idec_ref(id);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

// Opens a dataset whose data lie in this file: a key reached through a soft or external link, a dataset
// stored in external files, or a virtual dataset (whose data are mapped from other files) is refused, so that a
// crafted file cannot make modiff read, and copy into the data home, another file on the machine.
hid_t open_contained_dataset(hid_t file, const std::string& key, const std::string& where) {
  std::string partial;
  for (size_t pos = 0; pos != std::string::npos;) {
    const size_t next = key.find('/', pos + 1);
    partial = key.substr(0, next);
    pos = next;
    if (partial.empty() || partial == "/") continue;
    if (H5Lexists(file, partial.c_str(), H5P_DEFAULT) <= 0) throw Error(where + ": missing dataset");
    H5L_info_t link;
    if (H5Lget_info(file, partial.c_str(), &link, H5P_DEFAULT) < 0) throw Error(where + ": unreadable link");
    if (link.type != H5L_TYPE_HARD)
      throw Error(where + ": refused: '" + partial + "' is " +
                  (link.type == H5L_TYPE_EXTERNAL ? "an external link to another file" : "a soft link"));
  }
  Handle ds(H5Dopen2(file, key.c_str(), H5P_DEFAULT));
  if (ds.id < 0) throw Error(where + ": not a readable dataset");
  Handle plist(H5Dget_create_plist(ds.id));
  if (plist.id < 0) throw Error(where + ": unreadable dataset properties");
  if (H5Pget_external_count(plist.id) != 0) throw Error(where + ": refused: its data are stored in external files");
  if (H5Pget_layout(plist.id) == H5D_VIRTUAL) throw Error(where + ": refused: a virtual dataset (data from other files)");
  const hid_t id = ds.id;
  ds.id = -1;  // the caller owns it now
  return id;
}

template <typename T>
Array<T> read_numeric(hid_t file, const std::string& key, hid_t mem_type, const std::string& where) {
  Handle ds(open_contained_dataset(file, key, where));
  Handle space(H5Dget_space(ds.id));
  const int rank = H5Sget_simple_extent_ndims(space.id);
  if (rank < 0) throw Error(where + ": unreadable shape");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  Array<T> out;
  uint64_t n = 1;
  double values = 1;  // in floating point: a crafted shape's product may not fit 64 bits
  for (hsize_t d : dims) {
    out.shape.push_back(d);
    n *= d;
    values *= static_cast<double>(d);
  }
  std::string shape;
  for (hsize_t d : dims) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
  check_fits_in_memory(where + " (" + shape + " values)", values * sizeof(T) * 2);
  Handle file_type(H5Dget_type(ds.id));
  const H5T_class_t cls = H5Tget_class(file_type.id);
  if (cls == H5T_ENUM || (cls == H5T_INTEGER && sizeof(T) == 1)) {
    // h5py stores bool as an int8 enum {FALSE=0, TRUE=1}: read its raw
    // integers and map non-zero to 1.
    const size_t width = H5Tget_size(file_type.id);
    Handle native(H5Tget_native_type(file_type.id, H5T_DIR_ASCEND));
    std::vector<unsigned char> raw(n * width);
    if (n > 0 && H5Dread(ds.id, native.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
      throw Error(where + ": read failed (file truncated or corrupt?)");
    out.data.resize(n);
    for (uint64_t i = 0; i < n; ++i) {
      bool nonzero = false;
      for (size_t b = 0; b < width; ++b) nonzero |= raw[i * width + b] != 0;
      out.data[i] = static_cast<T>(nonzero ? 1 : 0);
    }
    return out;
  }
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) throw Error(where + ": not a numeric dataset");
  out.data.resize(n);
  if (n > 0 && H5Dread(ds.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data()) < 0)
    throw Error(where + ": read failed (file truncated or corrupt?)");
  return out;
}

// HDF5 reports a failed write without its cause; errno still holds it (ENOSPC on a full disk).
std::string system_reason() {
  return errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string(" (disk full?)");
}

// Closes a dataset just written: its last chunks reach the file here, so a failure is a failed write.
void close_written(Handle& ds, const std::string& where) {
  const hid_t id = ds.id;
  ds.id = -1;
  if (H5Dclose(id) < 0) throw Error(where + ": write failed" + system_reason());
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* names) {
  static_cast<std::vector<std::string>*>(names)->emplace_back(name);
  return 0;
}

}  // namespace

namespace {

// The read deadline. The fuzzer found files on which libhdf5 1.10 (Debian 12) spins without end inside its own
// readers (a crafted global heap behind a variable-length string attribute); HDF5 cannot be interrupted
// safely, so while any file is open for reading an alarm stands: if reading takes longer than
// read_deadline_seconds(), the process prints one line naming the file and exits 1. Nothing is being written
// while a file is read, so nothing is lost. Legitimate files read in well under a second per million rows.
// MODIFF_READ_DEADLINE_S (common/environment.h) shortens it (the test of that file, tests/data/crafted/) or, at 0, turns it off
// (scripts/fuzz: libFuzzer keeps SIGALRM for its own timeouts).
std::atomic<int> files_being_read{0};
char deadline_message[1024];
size_t deadline_message_size = 0;

void on_read_deadline(int) {
  const ssize_t written = ::write(2, deadline_message, deadline_message_size);
  (void)written;
  ::_exit(1);
}

void start_reading(const std::string& path) {
  if (files_being_read.fetch_add(1) != 0 || read_deadline_seconds() == 0) return;
  const std::string msg = "modiff: error: " + path + ": reading took longer than " +
                          std::to_string(read_deadline_seconds()) + " s (a corrupt or crafted HDF5 file); stopped\n";
  deadline_message_size = std::min(msg.size(), sizeof deadline_message);
  std::memcpy(deadline_message, msg.data(), deadline_message_size);
  std::signal(SIGALRM, on_read_deadline);
  ::alarm(read_deadline_seconds());
}

void done_reading() {
  if (files_being_read.fetch_sub(1) == 1 && read_deadline_seconds() != 0) ::alarm(0);
}

}  // namespace

File File::open_read(const std::string& path) {
  silence_hdf5_errors();
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error(path + ": cannot open file (" + std::strerror(errno) + ")");
    std::fclose(f);
    throw Error(path + ": not an HDF5 file or corrupt");
  }
  start_reading(path);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    done_reading();
    throw Error(path + ": cannot open as HDF5 (truncated or corrupt?)");
  }
  File f(id, path);
  f.watched_ = true;
  return f;
}

File File::create(const std::string& path) {
  silence_hdf5_errors();
  errno = 0;
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw Error(path + ": cannot create HDF5 file" + system_reason());
  return File(id, path);
}

namespace {

hid_t dataset_creation(uint64_t rows, uint64_t cols, int rank) {
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  // No modification times in object headers: the same data make the same bytes
  // (and sha256), whenever they are written.
  H5Pset_obj_track_times(plist, false);
  if (rows == 0) return plist;
  // About 1 MiB chunks of whole rows: fast deflate, cheap row-range reads.
  const uint64_t row_bytes = std::max<uint64_t>(1, cols) * 4;
  hsize_t chunk[2] = {std::min<hsize_t>(rows, std::max<hsize_t>(1, (1u << 20) / row_bytes)), cols};
  H5Pset_chunk(plist, rank, chunk);
  H5Pset_deflate(plist, 1);
  return plist;
}

}  // namespace

void File::write_f32(const std::string& key, const float* data, const std::vector<uint64_t>& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  const uint64_t rows = dims.empty() ? 1 : dims[0];
  const uint64_t cols = dims.size() > 1 ? dims[1] : 1;
  Handle plist(dataset_creation(rows, cols, static_cast<int>(dims.size())));
  Handle ds(H5Dcreate2(id_, key.c_str(), H5T_IEEE_F32LE, space.id, H5P_DEFAULT, plist.id, H5P_DEFAULT));
  if (ds.id < 0) throw Error(where(key) + ": cannot create dataset");
  errno = 0;
  if (rows > 0 && H5Dwrite(ds.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw Error(where(key) + ": write failed" + system_reason());
  close_written(ds, where(key));
}

void File::write_bool(const std::string& key, const uint8_t* data, uint64_t count) {
  Handle type(H5Tenum_create(H5T_NATIVE_INT8));
  int8_t no = 0, yes = 1;
  H5Tenum_insert(type.id, "FALSE", &no);
  H5Tenum_insert(type.id, "TRUE", &yes);
  hsize_t dims[1] = {count};
  Handle space(H5Screate_simple(1, dims, nullptr));
  Handle plist(dataset_creation(count, 1, 1));
  Handle ds(H5Dcreate2(id_, key.c_str(), type.id, space.id, H5P_DEFAULT, plist.id, H5P_DEFAULT));
  if (ds.id < 0) throw Error(where(key) + ": cannot create dataset");
  std::vector<int8_t> values(data, data + count);
  for (auto& v : values) v = v ? 1 : 0;
  errno = 0;
  if (count > 0 && H5Dwrite(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
    throw Error(where(key) + ": write failed" + system_reason());
  close_written(ds, where(key));
}

void File::create_group(const std::string& name) {
  Handle plist(H5Pcreate(H5P_GROUP_CREATE));
  H5Pset_obj_track_times(plist.id, false);
  Handle g(H5Gcreate2(id_, name.c_str(), H5P_DEFAULT, plist.id, H5P_DEFAULT));
  if (g.id < 0) throw Error(where(name) + ": cannot create group");
}

void File::set_attribute(const std::string& object, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.id, H5T_VARIABLE);
  H5Tset_cset(type.id, H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR));
  Handle attr(H5Acreate_by_name(id_, object.c_str(), name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT));
  const char* ptr = value.c_str();
  if (attr.id < 0 || H5Awrite(attr.id, type.id, &ptr) < 0) throw Error(where(object) + ": cannot write attribute " + name);
}

void File::set_attribute(const std::string& object, const std::string& name, double value) {
  Handle space(H5Screate(H5S_SCALAR));
  Handle attr(H5Acreate_by_name(id_, object.c_str(), name.c_str(), H5T_IEEE_F64LE, space.id, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT));
  if (attr.id < 0 || H5Awrite(attr.id, H5T_NATIVE_DOUBLE, &value) < 0)
    throw Error(where(object) + ": cannot write attribute " + name);
}

void File::set_attribute(const std::string& object, const std::string& name, long long value) {
  Handle space(H5Screate(H5S_SCALAR));
  Handle attr(H5Acreate_by_name(id_, object.c_str(), name.c_str(), H5T_STD_I64LE, space.id, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT));
  if (attr.id < 0 || H5Awrite(attr.id, H5T_NATIVE_LLONG, &value) < 0)
    throw Error(where(object) + ": cannot write attribute " + name);
}

std::string File::type_class(const std::string& key) const {
  Handle ds(open_contained_dataset(id_, key, where(key)));
  Handle type(H5Dget_type(ds.id));
  switch (H5Tget_class(type.id)) {
    case H5T_FLOAT: return "float";
    case H5T_INTEGER: return "integer";
    case H5T_ENUM: return "bool";
    case H5T_BITFIELD: return "bool";
    case H5T_STRING: return "string";
    default: return "other";
  }
}

std::vector<uint64_t> File::shape(const std::string& key) const {
  Handle ds(open_contained_dataset(id_, key, where(key)));
  Handle space(H5Dget_space(ds.id));
  const int rank = H5Sget_simple_extent_ndims(space.id);
  if (rank < 0) throw Error(where(key) + ": unreadable shape");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return std::vector<uint64_t>(dims.begin(), dims.end());
}

File::File(File&& o) noexcept : id_(o.id_), path_(std::move(o.path_)), watched_(o.watched_) {
  o.id_ = -1;
  o.watched_ = false;
}
File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) H5Fclose(id_);
    if (watched_) done_reading();
    id_ = o.id_;
    path_ = std::move(o.path_);
    watched_ = o.watched_;
    o.id_ = -1;
    o.watched_ = false;
  }
  return *this;
}
File::~File() {
  if (id_ >= 0) H5Fclose(id_);
  if (watched_) done_reading();
}

void File::close() {
  errno = 0;
  const hid_t id = id_;
  id_ = -1;
  if (H5Fclose(id) < 0) throw Error(path_ + ": cannot write the file" + system_reason());
}

std::string File::where(const std::string& key) const { return path_ + ": '" + key + "'"; }

std::vector<std::string> File::children(const std::string& group) const {
  std::vector<std::string> names;
  Handle g(H5Gopen2(id_, group.c_str(), H5P_DEFAULT));
  if (g.id < 0) throw Error(where(group) + ": missing group");
  if (H5Literate(g.id, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names) < 0)
    throw Error(where(group) + ": cannot list group (corrupt?)");
  return names;
}

bool File::exists(const std::string& key) const {
  // H5Lexists needs every intermediate group to exist, so walk the path.
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    size_t next = key.find('/', pos + 1);
    partial = key.substr(0, next);
    if (!partial.empty() && partial != "/" && H5Lexists(id_, partial.c_str(), H5P_DEFAULT) <= 0) return false;
    pos = next;
  }
  return true;
}

Array<double> File::read_f64(const std::string& key) const {
  return read_numeric<double>(id_, key, H5T_NATIVE_DOUBLE, where(key));
}
Array<float> File::read_f32(const std::string& key) const {
  return read_numeric<float>(id_, key, H5T_NATIVE_FLOAT, where(key));
}
Array<uint8_t> File::read_u8(const std::string& key) const {
  return read_numeric<uint8_t>(id_, key, H5T_NATIVE_UINT8, where(key));
}

bool File::has_attribute(const std::string& object, const std::string& name) const {
  return exists(object) && H5Aexists_by_name(id_, object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::string File::attribute(const std::string& object, const std::string& name) const {
  const std::string w = where(object) + " attribute '" + name + "'";
  if (!has_attribute(object, name)) throw Error(w + ": missing");
  Handle attr(H5Aopen_by_name(id_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  if (attr.id < 0) throw Error(w + ": unreadable");
  Handle type(H5Aget_type(attr.id));
  Handle space(H5Aget_space(attr.id));
  const H5T_class_t cls = H5Tget_class(type.id);
  if (cls == H5T_STRING) {
    if (H5Tis_variable_str(type.id) > 0) {
      Handle mem(H5Tcopy(H5T_C_S1));
      H5Tset_size(mem.id, H5T_VARIABLE);
      H5Tset_cset(mem.id, H5Tget_cset(type.id));
      char* value = nullptr;
      if (H5Aread(attr.id, mem.id, &value) < 0) throw Error(w + ": unreadable");
      std::string s = value ? value : "";
      H5free_memory(value);
      return s;
    }
    const size_t size = H5Tget_size(type.id);
    std::string s(size, '\0');
    Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.id, size);
    if (H5Aread(attr.id, mem.id, s.data()) < 0) throw Error(w + ": unreadable");
    s.resize(std::strlen(s.c_str()));
    return s;
  }
  if (cls == H5T_INTEGER) {
    long long v = 0;
    if (H5Sget_simple_extent_npoints(space.id) != 1 || H5Aread(attr.id, H5T_NATIVE_LLONG, &v) < 0)
      throw Error(w + ": not a scalar");
    return std::to_string(v);
  }
  if (cls == H5T_FLOAT) {
    double v = 0;
    if (H5Sget_simple_extent_npoints(space.id) != 1 || H5Aread(attr.id, H5T_NATIVE_DOUBLE, &v) < 0)
      throw Error(w + ": not a scalar");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  }
  throw Error(w + ": unsupported attribute type");
}

}  // namespace modiff::h5
