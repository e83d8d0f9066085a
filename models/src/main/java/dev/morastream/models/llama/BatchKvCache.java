package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;

/**
 * Keys and values of up to {@code slots} independent sequences for {@link LlamaModel#decode}: per
 * layer one preallocated buffer {@code (slots, KV, P, D)} ({@code P} = the model's context), each
 * sequence in a slot of its own at its own length. A decode step writes the new position of every
 * row with one indexed write per layer and attends over a view of the buffer, so its cost does not
 * grow with one op per row. Rows of a step are slots {@code 0..B-1}: the owner keeps the used slots
 * contiguous ({@link #move}).
 *
 * <p>Owned by its own manager (closed with the cache); not thread-safe.
 */
public final class BatchKvCache implements AutoCloseable {
    private final NDManager manager;
    private final NDArray[] keys; // per layer (S, KV, P, D)
    private final NDArray[] values; // per layer (S, KV, P, D)
    private final int[] length; // per slot: cached positions
    private final int positions;

    public BatchKvCache(NDManager parent, LlamaConfig config, int slots) {
        if (slots < 1) {
            throw new IllegalArgumentException("slots must be >= 1");
        }
        this.manager = parent.newSubManager();
        this.positions = config.maxPositionEmbeddings();
        int layers = config.numHiddenLayers();
        this.keys = new NDArray[layers];
        this.values = new NDArray[layers];
        Shape s = new Shape(slots, config.numKeyValueHeads(), positions, config.headDim());
        for (int i = 0; i < layers; i++) {
            keys[i] = manager.zeros(s); // (S, KV, P, D)
            values[i] = manager.zeros(s); // (S, KV, P, D)
        }
        this.length = new int[slots];
    }

    public int slots() {
        return length.length;
    }

    /** Cached positions of {@code slot}. */
    public int length(int slot) {
        return length[slot];
    }

    /** Copies the keys and values of a one-sequence cache (after its prefill) into {@code slot}. */
    public void load(int slot, KvCache single) {
        load(slot, single, 0, single.length());
    }

    /**
     * Copies the first {@code n} positions of row {@code row} of {@code from} (a batched prefill,
     * right-padded) into {@code slot}.
     */
    public void load(int slot, KvCache from, int row, int n) {
        if (n > positions || n > from.length()) {
            throw new IllegalArgumentException(n + " positions: the cache has " + from.length() + ", a slot " + positions);
        }
        NDIndex to = new NDIndex("{}, :, :{}, :", slot, n);
        NDIndex src = new NDIndex("{}, :, :{}, :", row, n);
        try (NDManager tmp = manager.newSubManager()) {
            for (int i = 0; i < keys.length; i++) {
                keys[i].set(to, from.key(i).get(tmp, src)); // (KV, n, D)
                values[i].set(to, from.value(i).get(tmp, src)); // (KV, n, D)
            }
        }
        length[slot] = n;
    }

    /** Moves the sequence in slot {@code from} to slot {@code to} (which it overwrites). */
    public void move(int from, int to) {
        int n = length[from];
        if (n > 0) {
            NDIndex src = new NDIndex("{}, :, :{}, :", from, n);
            NDIndex dst = new NDIndex("{}, :, :{}, :", to, n);
            try (NDManager tmp = manager.newSubManager()) {
                for (int i = 0; i < keys.length; i++) {
                    keys[i].set(dst, keys[i].get(tmp, src)); // (KV, n, D)
                    values[i].set(dst, values[i].get(tmp, src)); // (KV, n, D)
                }
            }
        }
        length[to] = n;
        length[from] = 0;
    }

    /** Forgets the sequence in {@code slot}. */
    public void free(int slot) {
        length[slot] = 0;
    }

    /**
     * Writes the new position of rows {@code 0..B-1} of one layer.
     *
     * @param rows int64 {@code (B)}: 0..B-1
     * @param at int64 {@code (B)}: each row's position ({@link #length})
     * @param k {@code (B, KV, D)}
     * @param v {@code (B, KV, D)}
     */
    void write(int layer, NDArray rows, NDArray at, NDArray k, NDArray v) {
        NDIndex ix = new NDIndex("{}, :, {}", rows, at);
        keys[layer].set(ix, k);
        values[layer].set(ix, v);
    }

    /** Keys and values of rows {@code 0..b-1}, positions {@code 0..span-1}: views {@code (B, KV, span, D)} in {@code step}. */
    NDArray[] read(int layer, NDManager step, int b, int span) {
        NDIndex ix = new NDIndex(":{}, :, :{}, :", b, span);
        return new NDArray[] {keys[layer].get(step, ix), values[layer].get(step, ix)};
    }

    /** Called by the model after a step over rows {@code 0..b-1}. */
    void advance(int b) {
        for (int i = 0; i < b; i++) {
            length[i]++;
        }
    }

    @Override
    public void close() {
        manager.close();
    }
}
