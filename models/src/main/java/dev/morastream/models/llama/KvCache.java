package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;

/**
 * Keys and values of every layer for the positions seen so far, owned by its own manager so that
 * each generation step's temporaries can be freed while the cache lives on.
 */
public final class KvCache implements AutoCloseable {
    private final NDManager manager;
    private final NDArray[] keys; // per layer (B, KV, S, D)
    private final NDArray[] values; // per layer (B, KV, S, D)
    private int length;

    public KvCache(NDManager parent, int layers) {
        this.manager = parent.newSubManager();
        this.keys = new NDArray[layers];
        this.values = new NDArray[layers];
    }

    /** Manager whose sub-managers should host each step's temporaries. */
    public NDManager manager() {
        return manager;
    }

    /** Number of cached positions. */
    public int length() {
        return length;
    }

    /**
     * Appends the new positions of one layer and returns the whole sequence so far.
     *
     * @param k {@code (B, KV, T, D)}
     * @param v {@code (B, KV, T, D)}
     * @return keys and values {@code (B, KV, S + T, D)}: views owned by the manager of {@code k}
     */
    NDList append(int layer, NDArray k, NDArray v) {
        NDManager step = k.getManager();
        NDArray nk = keys[layer] == null ? k.duplicate() : NDArrays.concat(new NDList(keys[layer], k), 2);
        NDArray nv = values[layer] == null ? v.duplicate() : NDArrays.concat(new NDList(values[layer], v), 2);
        nk.attach(manager);
        nv.attach(manager);
        if (keys[layer] != null) {
            keys[layer].close();
            values[layer].close();
        }
        keys[layer] = nk;
        values[layer] = nv;
        NDIndex all = new NDIndex(":");
        return new NDList(nk.get(step, all), nv.get(step, all));
    }

    /** Cached keys of {@code layer}: {@code (B, KV, S, D)} (null before the first forward). */
    NDArray key(int layer) {
        return keys[layer];
    }

    /** Cached values of {@code layer}: {@code (B, KV, S, D)}. */
    NDArray value(int layer) {
        return values[layer];
    }

    /** Called by the model once all layers of a forward pass have appended {@code t} positions. */
    void advance(int t) {
        length += t;
    }

    @Override
    public void close() {
        manager.close();
    }
}
