package dev.morastream.actors.registry;

import dev.morastream.models.checkpoint.AtomicFiles;
import dev.morastream.streams.state.StateFiles;
import dev.morastream.streams.state.StateStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The adapter registry as every node sees it, in a {@link StateStore} (no shared filesystem): the
 * node that trains a domain exports each version it publishes ({@code registry/<domain>/v<N>/<file>},
 * all files of a version in one atomic commit) and each alias move ({@code aliases/<domain>}); a
 * serving node fetches a version into its own local {@link AdapterRegistry} before it serves it.
 * Versions the exporting registry pruned are deleted from the store, except the aliased one.
 *
 * <p>Each domain's keys have one writer (the store of {@link #writerFor} that domain: its writer
 * identity fences a second node exporting the same lineage); reads go through {@link #reader}.
 */
public final class RegistryReplica {
    private static final Logger log = LoggerFactory.getLogger(RegistryReplica.class);
    static final String VERSIONS = "registry/";
    static final String ALIASES = "aliases/";

    private final StateStore reader;
    private final java.util.function.Function<String, StateStore> writers;

    /**
     * @param reader the store this node reads
     * @param writers the store that writes a domain's keys (the same for every call with that domain)
     */
    public RegistryReplica(StateStore reader, java.util.function.Function<String, StateStore> writers) {
        this.reader = reader;
        this.writers = writers;
    }

    /** One store for reads and writes (one node, or tests). */
    public RegistryReplica(StateStore store) {
        this(store, d -> store);
    }

    private StateStore writerFor(String domain) {
        return writers.apply(domain);
    }

    static String prefix(AdapterVersion v) {
        return VERSIONS + v.domain() + "/v" + v.number() + "/";
    }

    /**
     * Writes a stored version's files in one commit, and removes from the store the versions of its
     * domain that {@code registry} no longer keeps (never the aliased one).
     */
    public void export(AdapterRegistry registry, AdapterRegistry.Entry e) throws IOException {
        Map<String, byte[]> puts = StateFiles.read(e.dir(), prefix(e.version()));
        StateStore store = writerFor(e.version().domain());
        Set<AdapterVersion> kept = new HashSet<>();
        registry.versions(e.version().domain()).forEach(x -> kept.add(x.version()));
        registry.alias(e.version().domain()).ifPresent(kept::add);
        store.get(ALIASES + e.version().domain()).ifPresent(b -> kept.add(AdapterVersion.parse(new String(b, StandardCharsets.UTF_8))));
        Set<String> deletes = new HashSet<>();
        for (String k : store.keys(VERSIONS + e.version().domain() + "/")) {
            AdapterVersion v = versionOf(k);
            if (v != null && !kept.contains(v) && !v.equals(e.version())) {
                deletes.add(k);
            }
        }
        store.commit(puts, deletes);
    }

    /** Records that {@code v} is its domain's alias now. */
    public void alias(AdapterVersion v) {
        writerFor(v.domain()).put(ALIASES + v.domain(), v.toString().getBytes(StandardCharsets.UTF_8));
    }

    /** The alias of {@code domain} in the store. */
    public Optional<AdapterVersion> aliased(String domain) {
        return reader.get(ALIASES + AdapterVersion.checkDomain(domain)).map(b -> AdapterVersion.parse(new String(b, StandardCharsets.UTF_8)));
    }

    /** The alias of every domain in the store. */
    public Map<String, AdapterVersion> aliases() {
        Map<String, AdapterVersion> out = new TreeMap<>();
        for (String k : reader.keys(ALIASES)) {
            try {
                aliased(k.substring(ALIASES.length())).ifPresent(v -> out.put(v.domain(), v));
            } catch (IllegalArgumentException bad) {
                log.error("state store: ignoring alias {}: {}", k, bad.getMessage());
            }
        }
        return out;
    }

    /**
     * Makes {@code v} a version of {@code into} (fetching its files from the store when it is not
     * there yet), waiting up to {@code wait} for it to reach this node's view of the store.
     *
     * @return the local entry, or empty when the store does not have it (complete) within {@code wait}
     */
    public Optional<AdapterRegistry.Entry> fetch(AdapterRegistry into, AdapterVersion v, Duration wait) throws IOException {
        Optional<AdapterRegistry.Entry> have = into.get(v);
        if (have.isPresent()) {
            return have;
        }
        long deadline = System.nanoTime() + wait.toNanos();
        List<String> keys = reader.keys(prefix(v));
        while (!keys.contains(prefix(v) + "version.json") && System.nanoTime() < deadline) {
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while waiting for " + v + " in the state store", e);
            }
            keys = reader.keys(prefix(v));
        }
        if (!keys.contains(prefix(v) + "version.json")) {
            Map<String, String> damaged = new TreeMap<>();
            reader.damaged().forEach((k, why) -> {
                if (k.startsWith(prefix(v))) {
                    damaged.put(k, why);
                }
            });
            if (!damaged.isEmpty()) {
                throw new IOException(v + " is damaged in the state store (" + damaged + "); it is served nowhere new until its node"
                        + " exports it again");
            }
            return Optional.empty();
        }
        Map<String, byte[]> files = reader.getAll(keys);
        if (files.size() != keys.size()) {
            List<String> missing = new ArrayList<>(keys);
            missing.removeAll(files.keySet());
            throw new IOException(v + " is incomplete in the state store (missing or damaged: " + missing + ")");
        }
        Path tmp = Files.createTempDirectory(into.root(), ".fetch-" + v.domain() + "-v" + v.number() + "-");
        try {
            StateFiles.write(files, prefix(v), tmp);
            return Optional.of(into.adopt(v, tmp));
        } finally {
            AtomicFiles.deleteTree(tmp);
        }
    }

    /**
     * Brings {@code into} up to the store for {@code domain}, before this node trains it: every
     * version of the domain in the store that {@code into} lacks is fetched (so the domain's counter
     * moves past them and a version published here never reuses a name another node gave), and the
     * local alias is moved to the store's. A version that cannot be fetched (damaged, incomplete) is
     * logged and skipped.
     *
     * @return the versions fetched
     */
    public List<AdapterVersion> catchUp(AdapterRegistry into, String domain) throws IOException {
        Set<AdapterVersion> inStore = new java.util.TreeSet<>();
        for (String k : reader.keys(VERSIONS + AdapterVersion.checkDomain(domain) + "/")) {
            AdapterVersion v = versionOf(k);
            if (v != null && k.equals(prefix(v) + "version.json")) {
                inStore.add(v);
            }
        }
        List<AdapterVersion> fetched = new ArrayList<>();
        for (AdapterVersion v : inStore) {
            if (into.get(v).isPresent()) {
                continue;
            }
            try {
                if (fetch(into, v, Duration.ZERO).isPresent()) {
                    fetched.add(v);
                }
            } catch (IOException e) {
                log.error("state store: {} not caught up ({}); going on without it", v, e.getMessage());
            }
        }
        Optional<AdapterVersion> alias = aliased(domain);
        if (alias.isPresent() && !alias.equals(into.alias(domain)) && into.get(alias.get()).isPresent()) {
            into.setAlias(alias.get());
        }
        return fetched;
    }

    private static AdapterVersion versionOf(String key) {
        String[] parts = key.substring(VERSIONS.length()).split("/", 3);
        if (parts.length < 3 || !parts[1].startsWith("v")) {
            return null;
        }
        try {
            return new AdapterVersion(parts[0], Long.parseLong(parts[1].substring(1)));
        } catch (IllegalArgumentException bad) {
            return null;
        }
    }
}
