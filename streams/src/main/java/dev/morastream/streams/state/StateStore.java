package dev.morastream.streams.state;

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Blobs by key that outlive the node that wrote them: trainer checkpoints (adapter, optimizer,
 * offsets, ledger), adapter versions, aliases, the audit log.
 *
 * <p>A {@link #commit commit} of several keys is atomic: a reader sees all of its puts and deletes
 * or none of them, which is what lets a checkpoint's adapter, optimizer state and Kafka offsets
 * move together. {@link #getAll} reads several keys from one consistent state.
 *
 * <p>Keys are non-empty strings of at most {@value #MAX_KEY_LENGTH} characters without control
 * characters; {@code /} is the customary separator ({@code checkpoints/medicine/adapter}). Values
 * are arbitrary bytes, empty included. Arrays passed in and handed out are copies: changing one
 * afterwards changes nothing in the store.
 *
 * <p>A value found damaged (checksum mismatch, missing part) is reported on the log and in
 * {@link #damaged()}, and reads as absent; it never throws from {@link #get}.
 *
 * <p>Implementations: {@link KafkaStateStore} (the cluster default: a compacted topic every node
 * reads), {@link DirectoryStateStore} (one node, a local directory), {@link InMemoryStateStore}
 * (tests). An object store can implement it too.
 */
public interface StateStore extends AutoCloseable {
    int MAX_KEY_LENGTH = 1024;

    /** The value of {@code key}, or empty when it is absent (or damaged: see {@link #damaged()}). */
    Optional<byte[]> get(String key);

    /**
     * The values of those of {@code keys} that are present, read from one state: no commit is seen
     * in part (a checkpoint's pieces read together belong to the same checkpoint).
     */
    Map<String, byte[]> getAll(Collection<String> keys);

    /** The present keys that start with {@code prefix} ({@code ""}: all), in ascending order. */
    List<String> keys(String prefix);

    /**
     * Writes {@code puts} and removes {@code deletes} atomically; when it returns, this instance's
     * reads see the commit (read-your-writes). A key may not be in both. Deleting an absent key is
     * allowed (and does nothing).
     *
     * @throws FencedWriterException when a newer writer of the same identity has taken over
     * @throws StateStoreException when the commit did not happen (or its outcome is unknown)
     */
    void commit(Map<String, byte[]> puts, Set<String> deletes);

    /** {@code commit(Map.of(key, value), Set.of())}. */
    default void put(String key, byte[] value) {
        commit(Map.of(key, value), Set.of());
    }

    /** {@code commit(Map.of(), Set.of(key))}. */
    default void delete(String key) {
        commit(Map.of(), Set.of(key));
    }

    /** Keys whose current value is damaged, with why; they read as absent until overwritten or deleted. */
    Map<String, String> damaged();

    @Override
    void close();

    /** Throws {@link IllegalArgumentException} unless {@code key} is a valid key. */
    static void checkKey(String key) {
        if (key == null || key.isEmpty()) {
            throw new IllegalArgumentException("a state key must not be empty");
        }
        if (key.length() > MAX_KEY_LENGTH) {
            throw new IllegalArgumentException("state key longer than " + MAX_KEY_LENGTH + " characters: " + key.substring(0, 64) + "…");
        }
        for (int i = 0; i < key.length(); i++) {
            if (Character.isISOControl(key.charAt(i))) {
                throw new IllegalArgumentException("state key with a control character: " + key.replaceAll("\\p{Cntrl}", "?"));
            }
        }
    }

    /** Checks a commit's arguments: valid keys, no null value, no key both put and deleted. */
    static void checkCommit(Map<String, byte[]> puts, Set<String> deletes) {
        if (puts == null || deletes == null) {
            throw new IllegalArgumentException("puts and deletes must not be null (use Map.of() / Set.of())");
        }
        puts.forEach((k, v) -> {
            checkKey(k);
            if (v == null) {
                throw new IllegalArgumentException("null value for state key " + k + " (delete it instead)");
            }
        });
        for (String k : deletes) {
            checkKey(k);
            if (puts.containsKey(k)) {
                throw new IllegalArgumentException("state key " + k + " is both put and deleted in one commit");
            }
        }
    }
}
