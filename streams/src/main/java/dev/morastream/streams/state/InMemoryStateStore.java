package dev.morastream.streams.state;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;

/** A {@link StateStore} in this JVM's memory, gone with it: for tests and throw-away runs. */
public final class InMemoryStateStore implements StateStore {
    private final TreeMap<String, byte[]> values = new TreeMap<>();
    private boolean closed;

    @Override
    public synchronized Optional<byte[]> get(String key) {
        StateStore.checkKey(key);
        requireOpen();
        byte[] v = values.get(key);
        return v == null ? Optional.empty() : Optional.of(v.clone());
    }

    @Override
    public synchronized Map<String, byte[]> getAll(Collection<String> keys) {
        requireOpen();
        Map<String, byte[]> out = new LinkedHashMap<>();
        for (String k : keys) {
            StateStore.checkKey(k);
            byte[] v = values.get(k);
            if (v != null) {
                out.put(k, v.clone());
            }
        }
        return out;
    }

    @Override
    public synchronized List<String> keys(String prefix) {
        requireOpen();
        return new ArrayList<>(Prefixes.view(values, prefix).keySet());
    }

    @Override
    public synchronized void commit(Map<String, byte[]> puts, Set<String> deletes) {
        StateStore.checkCommit(puts, deletes);
        requireOpen();
        puts.forEach((k, v) -> values.put(k, v.clone()));
        deletes.forEach(values::remove);
    }

    @Override
    public Map<String, String> damaged() {
        return Map.of();
    }

    private void requireOpen() {
        if (closed) {
            throw new IllegalStateException("state store is closed");
        }
    }

    @Override
    public synchronized void close() {
        closed = true;
    }
}
