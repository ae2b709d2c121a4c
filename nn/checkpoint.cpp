#include "nn/checkpoint.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <unistd.h>
#include <zlib.h>

namespace sdeuq::nn {

static_assert(std::endian::native == std::endian::little, "the checkpoint format is little-endian");
static_assert(std::is_trivially_copyable_v<Generator>, "generators are saved as raw bytes");

namespace {

constexpr std::size_t header_size = 32;

// ---- payload serialisation ----
struct Writer {
    std::vector<std::uint8_t> buf;
    template <class T>
    void put(T v) {
        const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
        buf.insert(buf.end(), p, p + sizeof(T));
    }
    void bytes(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::uint8_t*>(p);
        buf.insert(buf.end(), b, b + n);
    }
};

struct Reader {
    const std::string& path;
    const std::uint8_t* p;
    std::size_t n, pos = 0;
    void need(std::size_t k, const char* what) const {
        if (k > n - pos)
            throw CheckpointError(
                fmt::format("checkpoint '{}': malformed payload (truncated {} at offset {})", path, what,
                            header_size + pos));
    }
    template <class T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    const std::uint8_t* take(std::size_t k, const char* what) {
        need(k, what);
        const auto* r = p + pos;
        pos += k;
        return r;
    }
};

std::uint32_t crc32_of(const std::uint8_t* p, std::size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    // zlib takes uInt lengths: feed large payloads in chunks.
    while (n > 0) {
        const uInt k = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return static_cast<std::uint32_t>(c);
}

std::string shape_str(const std::vector<std::int64_t>& s) {
    return fmt::format("[{}]", fmt::join(s, ", "));
}
const char* code_name(std::uint8_t d) {
    return d == 0 ? "f32" : d == 1 ? "f64" : "bytes";
}
std::uint8_t code_of(DType d) {
    return d == DType::f32 ? 0 : 1;
}

void write_all(int fd, const std::uint8_t* p, std::size_t n, const std::string& tmp) {
    while (n > 0) {
        const ssize_t k = ::write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            throw CheckpointError(
                fmt::format("checkpoint '{}': write failed: {}", tmp, std::strerror(errno)));
        }
        p += k;
        n -= static_cast<std::size_t>(k);
    }
}

CheckpointEntry tensor_entry(const std::string& name, const Tensor& t) {
    CheckpointEntry e;
    e.name = name;
    e.dtype = code_of(t.dtype());
    e.shape = t.shape().vec();
    e.data.resize(t.nbytes());
    if (t.nbytes()) std::memcpy(e.data.data(), t.raw(), t.nbytes());
    return e;
}

CheckpointEntry bytes_entry(const std::string& name, const void* p, std::size_t n) {
    CheckpointEntry e;
    e.name = name;
    e.dtype = 2;
    e.shape = {static_cast<std::int64_t>(n)};
    e.data.resize(n);
    std::memcpy(e.data.data(), p, n);
    return e;
}

}  // namespace

const CheckpointEntry* CheckpointFile::find(const std::string& name) const {
    for (auto& e : entries)
        if (e.name == name) return &e;
    return nullptr;
}

void write_checkpoint_file(const std::string& path, const CheckpointFile& ck) {
    Writer w;
    w.put<std::uint64_t>(ck.metadata.size());
    w.bytes(ck.metadata.data(), ck.metadata.size());
    for (auto& e : ck.entries) {
        w.put<std::uint32_t>(static_cast<std::uint32_t>(e.name.size()));
        w.bytes(e.name.data(), e.name.size());
        w.put<std::uint8_t>(e.dtype);
        w.put<std::uint8_t>(static_cast<std::uint8_t>(e.shape.size()));
        for (auto d : e.shape) w.put<std::int64_t>(d);
        w.put<std::uint64_t>(e.data.size());
        w.bytes(e.data.data(), e.data.size());
    }
    Writer h;
    h.bytes(checkpoint_magic, 8);
    h.put<std::uint32_t>(checkpoint_version);
    h.put<std::uint32_t>(static_cast<std::uint32_t>(ck.entries.size()));
    h.put<std::uint64_t>(w.buf.size());
    h.put<std::uint32_t>(crc32_of(w.buf.data(), w.buf.size()));
    h.put<std::uint32_t>(0);

    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw CheckpointError(fmt::format("checkpoint '{}': cannot create: {}", tmp, std::strerror(errno)));
    try {
        write_all(fd, h.buf.data(), h.buf.size(), tmp);
        write_all(fd, w.buf.data(), w.buf.size(), tmp);
        if (::fsync(fd) != 0)
            throw CheckpointError(
                fmt::format("checkpoint '{}': fsync failed: {}", tmp, std::strerror(errno)));
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw CheckpointError(fmt::format("checkpoint '{}': close failed: {}", tmp, std::strerror(errno)));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw CheckpointError(
            fmt::format("checkpoint '{}': rename from '{}' failed: {}", path, tmp, std::strerror(err)));
    }
    // Make the rename itself durable.
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

CheckpointFile read_checkpoint_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CheckpointError(fmt::format("checkpoint '{}': cannot open (missing or unreadable)", path));
    std::vector<std::uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (file.size() < header_size)
        throw CheckpointError(fmt::format("checkpoint '{}': truncated header ({} bytes, need {})", path,
                                          file.size(), header_size));
    if (std::memcmp(file.data(), checkpoint_magic, 8) != 0)
        throw CheckpointError(fmt::format("checkpoint '{}': bad magic (not an SDEUQCKP checkpoint)", path));
    Reader hr{path, file.data() + 8, header_size - 8};
    const auto version = hr.get<std::uint32_t>("version");
    const auto count = hr.get<std::uint32_t>("entry count");
    const auto payload = hr.get<std::uint64_t>("payload size");
    const auto crc = hr.get<std::uint32_t>("checksum");
    if (version != checkpoint_version)
        throw CheckpointError(fmt::format("checkpoint '{}': unsupported version {} (this build reads {})",
                                          path, version, checkpoint_version));
    if (file.size() - header_size != payload)
        throw CheckpointError(
            fmt::format("checkpoint '{}': {} (payload {} bytes, header says {})", path,
                        file.size() - header_size < payload ? "truncated" : "trailing bytes",
                        file.size() - header_size, payload));
    const std::uint32_t actual = crc32_of(file.data() + header_size, payload);
    if (actual != crc)
        throw CheckpointError(
            fmt::format("checkpoint '{}': checksum mismatch (CRC-32 {:08x}, header says {:08x}): "
                        "the file is corrupt",
                        path, actual, crc));
    Reader r{path, file.data() + header_size, static_cast<std::size_t>(payload)};
    CheckpointFile ck;
    const auto mlen = r.get<std::uint64_t>("metadata length");
    const auto* m = r.take(mlen, "metadata");
    ck.metadata.assign(reinterpret_cast<const char*>(m), mlen);
    for (std::uint32_t k = 0; k < count; ++k) {
        CheckpointEntry e;
        const auto nlen = r.get<std::uint32_t>("entry name length");
        const auto* nm = r.take(nlen, "entry name");
        e.name.assign(reinterpret_cast<const char*>(nm), nlen);
        e.dtype = r.get<std::uint8_t>("entry dtype");
        const auto rank = r.get<std::uint8_t>("entry rank");
        if (e.dtype > 2 || rank > Shape::max_rank)
            throw CheckpointError(fmt::format("checkpoint '{}': entry '{}' has invalid dtype {} or rank {}",
                                              path, e.name, e.dtype, rank));
        std::int64_t numel = 1;
        for (int d = 0; d < rank; ++d) {
            e.shape.push_back(r.get<std::int64_t>("entry shape"));
            if (e.shape.back() < 0)
                throw CheckpointError(
                    fmt::format("checkpoint '{}': entry '{}' has a negative dimension", path, e.name));
            numel *= e.shape.back();
        }
        const auto nbytes = r.get<std::uint64_t>("entry size");
        const std::uint64_t expect = static_cast<std::uint64_t>(numel) * (e.dtype == 0   ? 4
                                                                          : e.dtype == 1 ? 8
                                                                                         : 1);
        if (nbytes != expect)
            throw CheckpointError(fmt::format("checkpoint '{}': entry '{}' {} {} holds {} bytes, expected {}",
                                              path, e.name, code_name(e.dtype), shape_str(e.shape), nbytes,
                                              expect));
        const auto* d = r.take(nbytes, "entry data");
        e.data.assign(d, d + nbytes);
        if (ck.find(e.name))
            throw CheckpointError(fmt::format("checkpoint '{}': duplicate entry '{}'", path, e.name));
        ck.entries.push_back(std::move(e));
    }
    if (r.pos != r.n)
        throw CheckpointError(fmt::format("checkpoint '{}': {} unparsed payload bytes", path, r.n - r.pos));
    return ck;
}

// ---------------------------------------------------------------- model-level save / load

namespace {

// Everything a model + optimizer + generators hold, as (entry name, where it lives) pairs.
struct Slot {
    std::string name;
    Tensor* tensor = nullptr;        // tensors: written with copy_from into the existing storage
    Generator* generator = nullptr;  // generators: raw bytes
};

std::vector<Slot> model_slots(Module& model) {
    std::vector<Slot> s;
    for (auto& [n, p] : model.named_parameters()) s.push_back({"param/" + n, &p->value(), nullptr});
    for (auto& [n, b] : model.named_buffers()) s.push_back({"buffer/" + n, b, nullptr});
    for (auto& [n, g] : model.named_generators()) s.push_back({"generator/" + n, nullptr, g});
    return s;
}

std::vector<Slot> optim_slots(Optimizer& opt) {
    std::vector<Slot> s;
    for (auto& [n, t] : opt.named_state()) s.push_back({"optim/state/" + n, t, nullptr});
    return s;
}

bool starts_with(const std::string& s, const char* p) {
    return s.rfind(p, 0) == 0;
}

}  // namespace

void save_checkpoint(const std::string& path, Module& model, Optimizer* opt, const std::string& metadata_json,
                     const NamedGenerators& generators) {
    if (!nlohmann::json::accept(metadata_json))
        throw CheckpointError(fmt::format("checkpoint '{}': metadata is not valid JSON", path));
    CheckpointFile ck;
    ck.metadata = metadata_json;
    std::vector<Slot> slots = model_slots(model);
    if (opt) {
        const std::string type = opt->type_name();
        ck.entries.push_back(bytes_entry("optim/type", type.data(), type.size()));
        ck.entries.push_back(
            tensor_entry("optim/step", Tensor::scalar(double(opt->step_count()), DType::f64)));
        ck.entries.push_back(tensor_entry("optim/lr", Tensor::scalar(opt->lr(), DType::f64)));
        for (auto& s : optim_slots(*opt)) slots.push_back(s);
    }
    for (auto& [n, g] : generators) slots.push_back({"rng/" + n, nullptr, g});
    for (auto& s : slots) {
        if (ck.find(s.name))
            throw CheckpointError(fmt::format("checkpoint '{}': duplicate entry '{}'", path, s.name));
        ck.entries.push_back(s.tensor ? tensor_entry(s.name, *s.tensor)
                                      : bytes_entry(s.name, s.generator, sizeof(Generator)));
    }
    write_checkpoint_file(path, ck);
}

std::string load_checkpoint(const std::string& path, Module& model, Optimizer* opt,
                            const NamedGenerators& generators) {
    const CheckpointFile ck = read_checkpoint_file(path);
    std::vector<Slot> slots = model_slots(model);
    if (opt)
        for (auto& s : optim_slots(*opt)) slots.push_back(s);
    for (auto& [n, g] : generators) slots.push_back({"rng/" + n, nullptr, g});

    // 1. Validate everything.
    std::int64_t step = 0;
    double lr = 0.0;
    if (opt) {
        const auto* type = ck.find("optim/type");
        const auto* st = ck.find("optim/step");
        const auto* lre = ck.find("optim/lr");
        if (!type || !st || !lre)
            throw CheckpointError(
                fmt::format("checkpoint '{}': no optimizer state (optim/type, optim/step, optim/lr)", path));
        const std::string t(type->data.begin(), type->data.end());
        if (t != opt->type_name())
            throw CheckpointError(fmt::format("checkpoint '{}': optimizer is {} but the file holds {} state",
                                              path, opt->type_name(), t));
        if (st->dtype != 1 || !st->shape.empty() || lre->dtype != 1 || !lre->shape.empty())
            throw CheckpointError(
                fmt::format("checkpoint '{}': optim/step or optim/lr is not an f64 scalar", path));
        double v;
        std::memcpy(&v, st->data.data(), 8);
        step = static_cast<std::int64_t>(v);
        std::memcpy(&lr, lre->data.data(), 8);
    }
    std::vector<const CheckpointEntry*> src;
    for (auto& s : slots) {
        const CheckpointEntry* e = ck.find(s.name);
        if (!e) throw CheckpointError(fmt::format("checkpoint '{}': missing entry '{}'", path, s.name));
        if (s.tensor) {
            const auto want_shape = s.tensor->shape().vec();
            const std::uint8_t want_dtype = code_of(s.tensor->dtype());
            if (e->dtype != want_dtype || e->shape != want_shape)
                throw CheckpointError(
                    fmt::format("checkpoint '{}': entry '{}' is {}{} but the {} expects {}{}", path, s.name,
                                code_name(e->dtype), shape_str(e->shape),
                                starts_with(s.name, "optim/") ? "optimizer" : "model", code_name(want_dtype),
                                shape_str(want_shape)));
        } else if (e->dtype != 2 || e->data.size() != sizeof(Generator)) {
            throw CheckpointError(
                fmt::format("checkpoint '{}': entry '{}' is not a generator state ({} bytes, expected {})",
                            path, s.name, e->data.size(), sizeof(Generator)));
        }
        src.push_back(e);
    }
    for (auto& e : ck.entries) {
        const bool model_entry = starts_with(e.name, "param/") || starts_with(e.name, "buffer/") ||
                                 starts_with(e.name, "generator/");
        const bool optim_entry = starts_with(e.name, "optim/state/");
        if (!model_entry && !(opt && optim_entry)) continue;
        bool known = false;
        for (auto& s : slots) known = known || s.name == e.name;
        if (!known)
            throw CheckpointError(fmt::format("checkpoint '{}': unknown entry '{}' ({} {}) for {}", path,
                                              e.name, code_name(e.dtype), shape_str(e.shape),
                                              model_entry ? model.describe() : opt->type_name()));
    }
    if (!nlohmann::json::accept(ck.metadata))
        throw CheckpointError(fmt::format("checkpoint '{}': metadata is not valid JSON", path));

    // 2. Write (nothing below can fail).
    for (std::size_t i = 0; i < slots.size(); ++i) {
        if (slots[i].tensor) {
            if (!src[i]->data.empty())
                std::memcpy(slots[i].tensor->raw(), src[i]->data.data(), src[i]->data.size());
        } else {
            std::memcpy(static_cast<void*>(slots[i].generator), src[i]->data.data(), sizeof(Generator));
        }
    }
    if (opt) {
        opt->set_step_count(step);
        opt->set_lr(lr);
    }
    return ck.metadata;
}

nlohmann::json file_identity(const std::vector<std::filesystem::path>& files) {
    nlohmann::json out = nlohmann::json::object();
    std::vector<char> buf(1 << 20);
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        if (!in) throw std::runtime_error(fmt::format("{}: cannot open: {}", f.string(), std::strerror(errno)));
        uLong crc = crc32(0L, Z_NULL, 0);
        std::uint64_t bytes = 0;
        while (in) {
            in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
            const auto got = static_cast<std::size_t>(in.gcount());
            crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(got));
            bytes += got;
        }
        if (in.bad()) throw std::runtime_error(fmt::format("{}: read error", f.string()));
        out[f.filename().string()] = {{"bytes", bytes}, {"crc32", fmt::format("{:08x}", crc)}};
    }
    return out;
}

namespace {
std::string short_json(const nlohmann::json& j) {
    std::string s = j.dump();
    return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}
}  // namespace

std::optional<nlohmann::json> checkpoint_to_resume(const std::string& path, const nlohmann::json& identity,
                                                   bool resume) {
    std::error_code ec;
    if (!resume || !std::filesystem::exists(path, ec)) return std::nullopt;
    const CheckpointFile ck = read_checkpoint_file(path);
    nlohmann::json meta;
    try {
        meta = nlohmann::json::parse(ck.metadata);
    } catch (const nlohmann::json::exception& e) {
        throw CheckpointError(fmt::format("{}: corrupt checkpoint metadata ({})", path, e.what()));
    }
    const nlohmann::json theirs = meta.is_object() && meta.contains("identity") ? meta["identity"]
                                                                               : nlohmann::json(nullptr);
    if (theirs == identity) return meta;
    std::string what;
    int shown = 0;
    // Shortest paths first: "/dataset" or "/slot" say more than the fields of a data file.
    auto ops = nlohmann::json::diff(theirs, identity);
    std::stable_sort(ops.begin(), ops.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
        return a["path"].get<std::string>().size() < b["path"].get<std::string>().size();
    });
    for (const auto& op : ops) {
        if (++shown > 4) {
            what += "; ...";
            break;
        }
        const std::string ptr = op["path"].get<std::string>();
        const nlohmann::json::json_pointer jp(ptr);
        const std::string here = identity.contains(jp) ? short_json(identity[jp]) : "absent";
        const std::string there = theirs.is_structured() && theirs.contains(jp) ? short_json(theirs[jp]) : "absent";
        what += fmt::format("{}{} is {} in the checkpoint, {} in this run", what.empty() ? "" : "; ",
                            ptr.empty() ? "identity" : ptr, there, here);
    }
    throw CheckpointError(fmt::format(
        "{} belongs to another run ({}): not resumed and not overwritten; to start over, delete it, rerun with "
        "--no-resume (which overwrites it) or choose another --out",
        path, what));
}

}  // namespace sdeuq::nn
