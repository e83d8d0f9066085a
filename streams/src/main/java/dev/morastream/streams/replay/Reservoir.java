package dev.morastream.streams.replay;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * A uniform sample of fixed capacity over everything offered so far (Vitter's Algorithm R): the
 * first {@code capacity} items fill it; the n-th item after that replaces a random slot with
 * probability {@code capacity / n}, so every item seen stays with the same probability. Memory
 * never exceeds {@code capacity} items. Deterministic for a seed. Not thread-safe.
 */
public final class Reservoir<T> {
    private final int capacity;
    private final Random random;
    private final List<T> items;
    private long seen;

    public Reservoir(int capacity, long seed) {
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity must be positive");
        }
        this.capacity = capacity;
        this.random = new Random(seed);
        this.items = new ArrayList<>(Math.min(capacity, 1024));
    }

    /** Offers one item; it is kept with probability {@code capacity / seen}. */
    public void offer(T item) {
        seen++;
        if (items.size() < capacity) {
            items.add(item);
        } else {
            long j = random.nextLong(seen); // uniform in [0, seen)
            if (j < capacity) {
                items.set((int) j, item);
            }
        }
    }

    /** A uniformly chosen kept item; the reservoir must not be empty. */
    public T sample(Random r) {
        if (items.isEmpty()) {
            throw new IllegalStateException("empty reservoir");
        }
        return items.get(r.nextInt(items.size()));
    }

    public int size() {
        return items.size();
    }

    public boolean isEmpty() {
        return items.isEmpty();
    }

    public int capacity() {
        return capacity;
    }

    /** Items offered so far. */
    public long seen() {
        return seen;
    }

    /** The kept items (a copy). */
    public List<T> items() {
        return List.copyOf(items);
    }
}
