package dev.morastream.actors.registry;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.checkpoint.AtomicFiles;
import dev.morastream.models.checkpoint.Safetensors;
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
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Adapter versions on disk: {@code root/<domain>/v<N>/} holds an immutable copy of an adapter
 * directory plus {@code version.json} (creation time, scores, free-form info); {@code
 * root/<domain>/alias.json} names the version in service; {@code root/<domain>/counter} holds the
 * last number handed out, so that a name is never reused even after retention deletes it. Every
 * file is written to a temporary name, fsynced and renamed. Thread-safe within one process.
 *
 * <p>Damaged state never stops it. Opening a registry validates every file ({@link #recovery()}
 * says what was repaired): a version whose {@code version.json}, {@code adapter_config.json} or
 * {@code adapter_model.safetensors} is missing or unreadable (a folder left by a crash in the
 * middle of pruning, a torn copy) is moved to {@code <domain>/quarantine/} and skipped; a folder
 * that is not a version ({@code lost+found}) is ignored with a warning; an alias that is unreadable
 * or names a missing or damaged version falls back to the newest valid version, or to the base
 * model when there is none, with an error in the log; a lost or corrupt counter is rebuilt from the
 * highest number ever seen (quarantine included), so names stay unique. At run time a version
 * found damaged is quarantined the same way instead of failing the listing.
 */
public final class AdapterRegistry {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Logger log = LoggerFactory.getLogger(AdapterRegistry.class);
    private static final Pattern VERSION_DIR = Pattern.compile("v([0-9]{1,18})");
    private static final Pattern QUARANTINED = Pattern.compile("v([0-9]{1,18})(-.*)?");
    /** Where damaged versions of a domain are moved. */
    public static final String QUARANTINE = "quarantine";
    private static final String ALIAS = "alias.json";
    private static final String COUNTER = "counter";
    /** A temporary folder older than this is a leftover of a crash, not a publish in progress. */
    private static final java.time.Duration LEFTOVER_AGE = java.time.Duration.ofMinutes(10);

    /** What opening (or reading) the registry repaired. */
    public enum Repair {
        /** A damaged version was moved to the domain's quarantine folder. */
        QUARANTINED,
        /** Something that is not registry state (lost+found, a stray file) was left alone. */
        IGNORED,
        /** The alias was unreadable or named a missing or damaged version: it now names the newest valid one, or none (the base). */
        ALIAS_FALLBACK,
        /** The counter was missing or corrupt and was rebuilt from the versions seen. */
        COUNTER_REPAIRED,
        /** A temporary folder of a publish or prune that never finished was removed. */
        LEFTOVER_REMOVED;

        /** Stable lowercase name (metrics labels, logs). */
        public String id() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /**
     * One repair.
     *
     * @param domain the domain folder ({@code null} for the registry root)
     * @param path what was found
     * @param reason why it was not usable
     */
    public record Damage(String domain, Path path, Repair repair, String reason) {}

    /** A stored version and what was recorded with it. */
    public record Entry(AdapterVersion version, Path dir, Instant created, Map<String, Double> scores, Map<String, String> info) {}

    private final Path root;
    private final int keep;
    private final List<Damage> recovery = new ArrayList<>();

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
        recover();
    }

    /** What opening the registry (and reads since) repaired, oldest first. */
    public synchronized List<Damage> recovery() {
        return List.copyOf(recovery);
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
        long n = Math.max(readCounter(d), highestSeen(d)) + 1;
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

    /**
     * Installs a version another node's registry made, under its own number: {@code versionDir}
     * holds the adapter files and the {@code version.json} that registry wrote. Does nothing when
     * the version is here already. The domain's counter moves past it, so a version published here
     * later never reuses the number.
     */
    public synchronized Entry adopt(AdapterVersion v, Path versionDir) throws IOException {
        Optional<Entry> have = get(v);
        if (have.isPresent()) {
            return have.get();
        }
        if (!Files.isRegularFile(versionDir.resolve("version.json"))) {
            throw new IllegalArgumentException("not a registry version (no version.json): " + versionDir);
        }
        Path d = root.resolve(v.domain());
        Files.createDirectories(d);
        if (readCounter(d) < v.number()) {
            AtomicFiles.write(d.resolve(COUNTER), String.valueOf(v.number()).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        }
        Path tmp = d.resolve(".v" + v.number() + ".tmp-" + System.nanoTime());
        copyTree(versionDir, tmp);
        AtomicFiles.fsyncTree(tmp);
        AtomicFiles.move(tmp, d.resolve("v" + v.number()));
        AtomicFiles.fsync(d);
        Entry e = get(v).orElseThrow(() -> new IOException("adopted version " + v + " is damaged (quarantined)"));
        prune(v.domain());
        return e;
    }

    /** Every stored version of a domain, oldest first. */
    public synchronized List<Entry> versions(String domain) throws IOException {
        Path d = root.resolve(AdapterVersion.checkDomain(domain));
        if (!Files.isDirectory(d)) {
            return List.of();
        }
        List<Entry> out = new ArrayList<>();
        for (Path p : versionDirs(d)) {
            readOrQuarantine(domain, p).ifPresent(out::add);
        }
        out.sort(Comparator.comparing(Entry::version));
        return out;
    }

    /** Domains of the registry (folders with a valid domain name; anything else is ignored). */
    public synchronized List<String> domains() throws IOException {
        try (Stream<Path> s = Files.list(root)) {
            return s.filter(Files::isDirectory).map(p -> p.getFileName().toString()).filter(AdapterRegistry::isDomainName).sorted()
                    .toList();
        }
    }

    /** A stored version, if it still exists (a damaged one is quarantined and reported missing). */
    public synchronized Optional<Entry> get(AdapterVersion v) throws IOException {
        Path p = root.resolve(v.domain()).resolve("v" + v.number());
        return Files.isDirectory(p) ? readOrQuarantine(v.domain(), p) : Optional.empty();
    }

    /**
     * The version the domain's alias points at (the one in service), if any. An unreadable alias, or
     * one naming a missing or damaged version, falls back to the newest valid version (or none: the
     * base model); the alias file is rewritten so and the fallback logged as an error.
     */
    public synchronized Optional<AdapterVersion> alias(String domain) throws IOException {
        Path a = root.resolve(AdapterVersion.checkDomain(domain)).resolve(ALIAS);
        if (!Files.exists(a)) {
            return Optional.empty();
        }
        String problem;
        try {
            JsonNode n = JSON.readTree(Files.readAllBytes(a));
            if (n == null || !n.path("version").isTextual()) {
                throw new IOException("no \"version\" field");
            }
            AdapterVersion v = AdapterVersion.parse(n.path("version").asText());
            if (!v.domain().equals(domain)) {
                problem = "names " + v + ", a version of another domain";
            } else if (get(v).isPresent()) {
                return Optional.of(v);
            } else {
                problem = "names " + v + ", which is missing or damaged";
            }
        } catch (IOException | RuntimeException e) {
            problem = "is unreadable (" + e.getMessage() + ")";
        }
        return aliasFallback(domain, a, problem);
    }

    private Optional<AdapterVersion> aliasFallback(String domain, Path a, String problem) throws IOException {
        List<Entry> valid = versions(domain);
        Optional<AdapterVersion> to = valid.isEmpty() ? Optional.empty() : Optional.of(valid.get(valid.size() - 1).version());
        Path q = Files.createDirectories(root.resolve(domain).resolve(QUARANTINE));
        AtomicFiles.move(a, unique(q, ALIAS + "-" + Instant.now().toEpochMilli()));
        if (to.isPresent()) {
            writeAlias(to.get());
        }
        AtomicFiles.fsync(root.resolve(domain));
        log.error("registry: the alias of {} {}: it now points at {} (the old alias file is in {})", domain, problem,
                to.map(Object::toString).orElse("the base model"), q);
        recovery.add(new Damage(domain, a, Repair.ALIAS_FALLBACK, problem + " -> " + to.map(Object::toString).orElse("base")));
        return to;
    }

    /** Points the domain's alias at {@code v}, which must exist. */
    public synchronized void setAlias(AdapterVersion v) throws IOException {
        if (get(v).isEmpty()) {
            throw new IllegalArgumentException("no such adapter version " + v);
        }
        writeAlias(v);
    }

    private void writeAlias(AdapterVersion v) throws IOException {
        ObjectNode a = JSON.createObjectNode();
        a.put("version", v.toString());
        a.put("updated", Instant.now().toString());
        AtomicFiles.write(root.resolve(v.domain()).resolve(ALIAS), JSON.writeValueAsBytes(a));
    }

    private Entry read(String domain, Path dir) throws IOException {
        JsonNode m = JSON.readTree(Files.readAllBytes(dir.resolve("version.json")));
        if (m == null || !m.isObject()) {
            throw new IOException("version.json is not a JSON object");
        }
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
            // renamed out of the version namespace first: a crash in the middle of the delete leaves a
            // leftover that the next start removes, never a half version
            Path doomed = e.dir().resolveSibling("." + e.dir().getFileName() + ".deleting-" + System.nanoTime());
            AtomicFiles.move(e.dir(), doomed);
            AtomicFiles.deleteTree(doomed);
            excess--;
        }
    }

    /** The counter's value; 0 when missing or corrupt (the caller takes the highest number seen too). */
    private static long readCounter(Path d) {
        Path c = d.resolve(COUNTER);
        try {
            return Files.isRegularFile(c) ? Long.parseLong(Files.readString(c).strip()) : 0L;
        } catch (IOException | RuntimeException e) {
            return 0L;
        }
    }

    /** The highest version number among the domain's versions and its quarantine. */
    private static long highestSeen(Path d) throws IOException {
        long max = 0;
        for (Path p : versionDirs(d)) {
            max = Math.max(max, number(p.getFileName().toString()));
        }
        Path q = d.resolve(QUARANTINE);
        if (Files.isDirectory(q)) {
            try (Stream<Path> s = Files.list(q)) {
                for (Path p : s.toList()) {
                    Matcher m = QUARANTINED.matcher(p.getFileName().toString());
                    if (m.matches()) {
                        max = Math.max(max, Long.parseLong(m.group(1)));
                    }
                }
            }
        }
        return max;
    }

    private static long number(String versionDirName) {
        return Long.parseLong(versionDirName.substring(1));
    }

    private static List<Path> versionDirs(Path d) throws IOException {
        if (!Files.isDirectory(d)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(d)) {
            return s.filter(p -> VERSION_DIR.matcher(p.getFileName().toString()).matches() && Files.isDirectory(p)).toList();
        }
    }

    private static boolean isDomainName(String name) {
        try {
            AdapterVersion.checkDomain(name);
            return true;
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    /** Reads a version; a damaged one is quarantined (empty), one removed meanwhile is just absent. */
    private Optional<Entry> readOrQuarantine(String domain, Path dir) throws IOException {
        try {
            return Optional.of(read(domain, dir));
        } catch (IOException | RuntimeException e) {
            if (!Files.exists(dir)) {
                return Optional.empty(); // pruned meanwhile (by another instance on the same directory)
            }
            quarantine(domain, dir, "unreadable version.json: " + e.getMessage());
            return Optional.empty();
        }
    }

    private void quarantine(String domain, Path dir, String reason) throws IOException {
        Path q = Files.createDirectories(root.resolve(domain).resolve(QUARANTINE));
        Path to = unique(q, dir.getFileName().toString());
        try {
            AtomicFiles.move(dir, to);
        } catch (java.nio.file.NoSuchFileException gone) {
            return;
        }
        AtomicFiles.fsync(root.resolve(domain));
        log.error("registry: {}/{} is damaged ({}): moved to {} and skipped", domain, dir.getFileName(), reason, to);
        recovery.add(new Damage(domain, dir, Repair.QUARANTINED, reason));
    }

    private static Path unique(Path dir, String name) {
        Path p = dir.resolve(name);
        for (int i = 1; Files.exists(p); i++) {
            p = dir.resolve(name + "-" + i);
        }
        return p;
    }

    /** Why a version folder cannot be served, or {@code null} when it can. */
    private String damage(String domain, Path dir) {
        if (!Files.isRegularFile(dir.resolve("version.json"))) {
            return "no version.json (a crash while it was written or deleted?)";
        }
        try {
            read(domain, dir);
        } catch (IOException | RuntimeException e) {
            return "unreadable version.json: " + e.getMessage();
        }
        Path cfg = dir.resolve(AdapterFiles.CONFIG);
        if (!Files.isRegularFile(cfg)) {
            return "no " + AdapterFiles.CONFIG;
        }
        try {
            JsonNode c = JSON.readTree(Files.readAllBytes(cfg));
            if (c == null || !c.isObject()) {
                return AdapterFiles.CONFIG + " is not a JSON object";
            }
        } catch (IOException e) {
            return "unreadable " + AdapterFiles.CONFIG + ": " + e.getMessage();
        }
        Path w = dir.resolve(AdapterFiles.WEIGHTS);
        if (!Files.isRegularFile(w)) {
            return "no " + AdapterFiles.WEIGHTS;
        }
        try (Safetensors.Reader r = Safetensors.open(w)) {
            r.entries();
        } catch (RuntimeException e) {
            return "corrupt " + AdapterFiles.WEIGHTS + ": " + e.getMessage();
        }
        return null;
    }

    /** Validates every domain at open: see the class comment. */
    private synchronized void recover() {
        try {
            List<Path> top;
            try (Stream<Path> s = Files.list(root)) {
                top = s.sorted().toList();
            }
            for (Path p : top) {
                String name = p.getFileName().toString();
                if (Files.isDirectory(p) && isDomainName(name)) {
                    recoverDomain(name, p);
                } else {
                    ignored(null, p, Files.isDirectory(p) ? "not a domain folder" : "a stray file");
                }
            }
        } catch (IOException e) {
            // an unreadable registry root is an environment problem the first real use reports; never a boot failure here
            log.error("registry: cannot validate {}: {}", root, e.toString());
        }
    }

    private void recoverDomain(String domain, Path d) throws IOException {
        List<Path> entries;
        try (Stream<Path> s = Files.list(d)) {
            entries = s.sorted().toList();
        }
        for (Path p : entries) {
            String name = p.getFileName().toString();
            if (VERSION_DIR.matcher(name).matches() && Files.isDirectory(p)) {
                String why = damage(domain, p);
                if (why != null) {
                    quarantine(domain, p, why);
                }
            } else if (name.startsWith(".v") && Files.isDirectory(p) && (name.contains(".tmp-") || name.contains(".deleting-"))) {
                if (Files.getLastModifiedTime(p).toInstant().isAfter(Instant.now().minus(LEFTOVER_AGE))) {
                    continue; // perhaps another process publishing right now
                }
                AtomicFiles.deleteTree(p);
                log.warn("registry: removed {}/{}, left by a publish or prune that never finished", domain, name);
                recovery.add(new Damage(domain, p, Repair.LEFTOVER_REMOVED, "unfinished publish or prune"));
            } else if (name.equals(ALIAS) || name.equals(COUNTER) || name.equals(QUARANTINE)) {
                continue;
            } else if (name.equals(ALIAS + ".tmp") || name.equals(COUNTER + ".tmp")) {
                Files.deleteIfExists(p);
            } else {
                ignored(domain, p, Files.isDirectory(p) ? "not a version folder" : "a stray file");
            }
        }
        long counter = readCounter(d);
        long seen = highestSeen(d);
        Path c = d.resolve(COUNTER);
        if (seen > counter) {
            AtomicFiles.write(c, String.valueOf(seen).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            log.warn("registry: the counter of {} was missing, corrupt or behind ({}); rebuilt as {} from the versions seen", domain,
                    counter, seen);
            recovery.add(new Damage(domain, c, Repair.COUNTER_REPAIRED, "counter " + counter + " below highest version " + seen));
        }
        alias(domain); // validates it, falling back when it is damaged
    }

    private void ignored(String domain, Path p, String why) {
        log.warn("registry: ignoring {} ({})", p, why);
        recovery.add(new Damage(domain, p, Repair.IGNORED, why));
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
