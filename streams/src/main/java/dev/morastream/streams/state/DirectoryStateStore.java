package dev.morastream.streams.state;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A {@link StateStore} in a local directory, for a single node (no Kafka needed):
 *
 * <pre>
 * DIR/state.json        the index: {"format": "morastream-state-dir", "version": 1, "seq": n,
 *                       "entries": {key: {"file": "blobs/…", "size": …, "sha256": …}}}
 * DIR/blobs/COMMIT-I    one file per value, never rewritten
 * DIR/.lock             held (OS file lock) by the one open instance
 * </pre>
 *
 * A commit writes its new value files (fsync), then a new index next to the old one and renames it
 * over {@code state.json} (atomic move, fsync of the directory): a crash before the rename leaves the
 * old state, after it the new one. Files no index refers to (a crashed commit's, or values replaced)
 * are deleted after the rename and on open.
 */
public final class DirectoryStateStore implements StateStore {
    private static final Logger log = LoggerFactory.getLogger(DirectoryStateStore.class);
    static final String FORMAT = "morastream-state-dir";
    static final int VERSION = 1;
    private static final ObjectMapper JSON = new ObjectMapper();

    private record Entry(String file, long size, String sha256) {}

    private final Path dir;
    private final Path blobs;
    private final FileChannel lockChannel;
    private final FileLock lock;
    private final TreeMap<String, Entry> entries = new TreeMap<>();
    private final Map<String, String> damaged = new ConcurrentHashMap<>();
    private long seq;
    private boolean closed;

    private DirectoryStateStore(Path dir, FileChannel lockChannel, FileLock lock) {
        this.dir = dir;
        this.blobs = dir.resolve("blobs");
        this.lockChannel = lockChannel;
        this.lock = lock;
    }

    /** Opens (creating when missing) the store in {@code dir}; one instance at a time may hold it. */
    public static DirectoryStateStore open(Path dir) {
        try {
            Files.createDirectories(dir.resolve("blobs"));
            FileChannel ch = FileChannel.open(dir.resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
            FileLock lock;
            try {
                lock = ch.tryLock();
            } catch (OverlappingFileLockException e) {
                lock = null;
            }
            if (lock == null) {
                ch.close();
                throw new StateStoreException("state directory " + dir + " is held by another open store (this process or another)");
            }
            DirectoryStateStore s = new DirectoryStateStore(dir, ch, lock);
            try {
                s.load();
                s.collectGarbage();
            } catch (IOException | RuntimeException e) {
                s.close();
                throw e;
            }
            return s;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open the state directory " + dir, e);
        }
    }

    private void load() throws IOException {
        Path index = dir.resolve("state.json");
        if (!Files.exists(index)) {
            return;
        }
        JsonNode root = JSON.readTree(index.toFile());
        if (!FORMAT.equals(root.path("format").asText()) || root.path("version").asInt() != VERSION) {
            throw new StateStoreException(index + " is not a " + FORMAT + " index of version " + VERSION + " (format "
                    + root.path("format").asText("?") + ", version " + root.path("version").asText("?") + ")");
        }
        seq = root.path("seq").asLong();
        Iterator<Map.Entry<String, JsonNode>> it = root.path("entries").fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            JsonNode v = e.getValue();
            entries.put(e.getKey(), new Entry(v.path("file").asText(), v.path("size").asLong(), v.path("sha256").asText()));
        }
    }

    /** Deletes value files and temporary files that the index does not name. */
    private void collectGarbage() throws IOException {
        Set<String> live = new HashSet<>();
        entries.values().forEach(e -> live.add(e.file()));
        try (DirectoryStream<Path> files = Files.newDirectoryStream(blobs)) {
            for (Path f : files) {
                if (!live.contains("blobs/" + f.getFileName())) {
                    Files.deleteIfExists(f);
                }
            }
        }
        Files.deleteIfExists(dir.resolve("state.json.tmp"));
    }

    public Path dir() {
        return dir;
    }

    @Override
    public Optional<byte[]> get(String key) {
        StateStore.checkKey(key);
        Entry e;
        synchronized (this) {
            requireOpen();
            e = entries.get(key);
        }
        return e == null ? Optional.empty() : Optional.ofNullable(read(key, e));
    }

    @Override
    public synchronized Map<String, byte[]> getAll(Collection<String> keys) {
        keys.forEach(StateStore::checkKey);
        requireOpen();
        // under the lock: a commit (which deletes replaced files) cannot run in between
        Map<String, byte[]> out = new LinkedHashMap<>();
        for (String k : keys) {
            Entry e = entries.get(k);
            byte[] v = e == null ? null : read(k, e);
            if (v != null) {
                out.put(k, v);
            }
        }
        return out;
    }

    /** The value of an entry, or null (logged, in {@link #damaged()}) when its file is missing or does not match. */
    private synchronized byte[] read(String key, Entry e) {
        byte[] v;
        try {
            v = Files.readAllBytes(dir.resolve(e.file()));
        } catch (NoSuchFileException ex) {
            return quarantine(key, "its file " + e.file() + " is missing");
        } catch (IOException ex) {
            throw new UncheckedIOException("cannot read state key " + key + " from " + dir.resolve(e.file()), ex);
        }
        if (v.length != e.size()) {
            return quarantine(key, e.file() + " has " + v.length + " bytes, the index says " + e.size());
        }
        String sha = Digests.sha256Hex(v);
        if (!sha.equals(e.sha256())) {
            return quarantine(key, e.file() + " has SHA-256 " + sha + ", the index says " + e.sha256());
        }
        return v;
    }

    private byte[] quarantine(String key, String why) {
        if (damaged.put(key, why) == null) {
            log.error("state store {}: the value of {} is damaged and reads as absent: {}", dir, key, why);
        }
        return null;
    }

    @Override
    public synchronized List<String> keys(String prefix) {
        requireOpen();
        List<String> out = new ArrayList<>();
        for (String k : Prefixes.view(entries, prefix).keySet()) {
            if (!damaged.containsKey(k)) {
                out.add(k);
            }
        }
        return out;
    }

    @Override
    public synchronized void commit(Map<String, byte[]> puts, Set<String> deletes) {
        StateStore.checkCommit(puts, deletes);
        requireOpen();
        String commit = UUID.randomUUID().toString().replace("-", "").substring(0, 16);
        TreeMap<String, Entry> next = new TreeMap<>(entries);
        List<Path> written = new ArrayList<>();
        try {
            int i = 0;
            for (Map.Entry<String, byte[]> p : new TreeMap<>(puts).entrySet()) {
                String file = "blobs/" + commit + "-" + i++;
                Path f = dir.resolve(file);
                written.add(f);
                writeDurably(f, p.getValue());
                next.put(p.getKey(), new Entry(file, p.getValue().length, Digests.sha256Hex(p.getValue())));
            }
            deletes.forEach(next::remove);
            writeIndex(next, seq + 1);
        } catch (IOException | RuntimeException e) {
            for (Path f : written) {
                try {
                    Files.deleteIfExists(f);
                } catch (IOException ignored) {
                    // collected on the next open
                }
            }
            throw new StateStoreException("commit to " + dir + " did not happen: " + e.getMessage(), e);
        }
        // the new index is in place: drop the values it no longer names
        Set<String> live = new HashSet<>();
        next.values().forEach(e -> live.add(e.file()));
        for (Entry old : entries.values()) {
            if (!live.contains(old.file())) {
                try {
                    Files.deleteIfExists(dir.resolve(old.file()));
                } catch (IOException e) {
                    log.warn("state store {}: cannot delete the replaced {} (collected on the next open): {}", dir, old.file(), e.toString());
                }
            }
        }
        entries.clear();
        entries.putAll(next);
        seq++;
        puts.keySet().forEach(damaged::remove);
        deletes.forEach(damaged::remove);
    }

    private void writeIndex(TreeMap<String, Entry> next, long nextSeq) throws IOException {
        ObjectNode root = JSON.createObjectNode();
        root.put("format", FORMAT).put("version", VERSION).put("seq", nextSeq);
        ObjectNode es = root.putObject("entries");
        next.forEach((k, e) -> es.putObject(k).put("file", e.file()).put("size", e.size()).put("sha256", e.sha256()));
        Path tmp = dir.resolve("state.json.tmp");
        writeDurably(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root));
        try {
            Files.move(tmp, dir.resolve("state.json"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException("the file system of " + dir + " cannot rename atomically; a state directory needs it", e);
        }
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        } catch (IOException e) {
            // some file systems cannot sync a directory; the rename is atomic still
        }
    }

    private static void writeDurably(Path f, byte[] bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        }
    }

    @Override
    public Map<String, String> damaged() {
        return Map.copyOf(damaged);
    }

    private void requireOpen() {
        if (closed) {
            throw new IllegalStateException("state store " + dir + " is closed");
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            lock.release();
            lockChannel.close();
        } catch (IOException e) {
            log.warn("state store {}: releasing the lock: {}", dir, e.toString());
        }
    }
}
