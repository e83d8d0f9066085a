package dev.morastream.actors.registry;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.checkpoint.AtomicFiles;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Adapter versions on disk: {@code root/<domain>/v<N>/} holds an immutable copy of an adapter
 * directory plus {@code version.json} (creation time, scores, free-form info); {@code
 * root/<domain>/alias.json} names the version in service; {@code root/<domain>/counter} holds the
 * last number handed out, so that a name is never reused even after retention deletes it. Every
 * file is written to a temporary name, fsynced and renamed. Thread-safe within one process.
 */
public final class AdapterRegistry {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** A stored version and what was recorded with it. */
    public record Entry(AdapterVersion version, Path dir, Instant created, Map<String, Double> scores, Map<String, String> info) {}

    private final Path root;
    private final int keep;

    /**
     * @param root directory of the registry (created when missing)
     * @param keep versions kept per domain (at least 1); the aliased version is never deleted
     */
    public AdapterRegistry(Path root, int keep) {
        if (keep < 1) {
            throw new IllegalArgumentException("keep must be at least 1");
        }
        this.root = root;
        this.keep = keep;
        try {
            Files.createDirectories(root);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create registry " + root, e);
        }
    }

    public Path root() {
        return root;
    }

    /**
     * Copies {@code adapterDir} in as the domain's next version.
     *
     * @return the new, never used before, version
     */
    public synchronized Entry publish(String domain, Path adapterDir, Map<String, Double> scores, Map<String, String> info)
            throws IOException {
        AdapterVersion.checkDomain(domain);
        if (!Files.isDirectory(adapterDir)) {
            throw new IllegalArgumentException("not an adapter directory: " + adapterDir);
        }
        Path d = root.resolve(domain);
        Files.createDirectories(d);
        long n = readCounter(d) + 1;
        AtomicFiles.write(d.resolve("counter"), String.valueOf(n).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        AdapterVersion v = new AdapterVersion(domain, n);
        Path tmp = d.resolve(".v" + n + ".tmp-" + System.nanoTime());
        copyTree(adapterDir, tmp);
        Instant now = Instant.now();
        ObjectNode meta = JSON.createObjectNode();
        meta.put("version", v.toString());
        meta.put("created", now.toString());
        meta.put("format_version", 1);
        ObjectNode sc = meta.putObject("scores");
        scores.forEach(sc::put);
        ObjectNode in = meta.putObject("info");
        info.forEach(in::put);
        Files.write(tmp.resolve("version.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(meta));
        AtomicFiles.fsyncTree(tmp);
        AtomicFiles.move(tmp, d.resolve("v" + n));
        AtomicFiles.fsync(d);
        prune(domain);
        return new Entry(v, d.resolve("v" + n), now, Map.copyOf(scores), Map.copyOf(info));
    }

    /** Every stored version of a domain, oldest first. */
    public synchronized List<Entry> versions(String domain) throws IOException {
        Path d = root.resolve(AdapterVersion.checkDomain(domain));
        if (!Files.isDirectory(d)) {
            return List.of();
        }
        List<Entry> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(d)) {
            for (Path p : s.filter(p -> p.getFileName().toString().matches("v[0-9]+")).toList()) {
                out.add(read(domain, p));
            }
        }
        out.sort(Comparator.comparing(Entry::version));
        return out;
    }

    /** Domains with at least one version. */
    public synchronized List<String> domains() throws IOException {
        try (Stream<Path> s = Files.list(root)) {
            return s.filter(Files::isDirectory).map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /** A stored version, if it still exists. */
    public synchronized Optional<Entry> get(AdapterVersion v) throws IOException {
        Path p = root.resolve(v.domain()).resolve("v" + v.number());
        return Files.isRegularFile(p.resolve("version.json")) ? Optional.of(read(v.domain(), p)) : Optional.empty();
    }

    /** The version the domain's alias points at (the one in service), if any. */
    public synchronized Optional<AdapterVersion> alias(String domain) throws IOException {
        Path a = root.resolve(AdapterVersion.checkDomain(domain)).resolve("alias.json");
        if (!Files.isRegularFile(a)) {
            return Optional.empty();
        }
        return Optional.of(AdapterVersion.parse(JSON.readTree(a.toFile()).path("version").asText()));
    }

    /** Points the domain's alias at {@code v}, which must exist. */
    public synchronized void setAlias(AdapterVersion v) throws IOException {
        if (get(v).isEmpty()) {
            throw new IllegalArgumentException("no such adapter version " + v);
        }
        ObjectNode a = JSON.createObjectNode();
        a.put("version", v.toString());
        a.put("updated", Instant.now().toString());
        AtomicFiles.write(root.resolve(v.domain()).resolve("alias.json"), JSON.writeValueAsBytes(a));
    }

    private Entry read(String domain, Path dir) throws IOException {
        JsonNode m = JSON.readTree(dir.resolve("version.json").toFile());
        Map<String, Double> scores = new LinkedHashMap<>();
        m.path("scores").fields().forEachRemaining(e -> scores.put(e.getKey(), e.getValue().asDouble()));
        Map<String, String> info = new LinkedHashMap<>();
        m.path("info").fields().forEachRemaining(e -> info.put(e.getKey(), e.getValue().asText()));
        AdapterVersion v = new AdapterVersion(domain, Long.parseLong(dir.getFileName().toString().substring(1)));
        return new Entry(v, dir, Instant.parse(m.path("created").asText()), scores, info);
    }

    private void prune(String domain) throws IOException {
        List<Entry> all = versions(domain);
        Optional<AdapterVersion> serving = alias(domain);
        int excess = all.size() - keep;
        for (Entry e : all) {
            if (excess <= 0) {
                break;
            }
            if (serving.isPresent() && serving.get().equals(e.version())) {
                continue;
            }
            AtomicFiles.deleteTree(e.dir());
            excess--;
        }
    }

    private static long readCounter(Path d) throws IOException {
        Path c = d.resolve("counter");
        return Files.isRegularFile(c) ? Long.parseLong(Files.readString(c).strip()) : 0L;
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else {
                    Files.copy(p, t, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
    }

}
