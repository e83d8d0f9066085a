package dev.morastream.models.adapters;

import ai.djl.ndarray.NDArray;
import java.util.Map;

/**
 * Full fine-tuning of one linear layer: the base weight itself is trained; its update is {@code
 * W - W0} with {@code W0} kept as a copy on the Java heap.
 */
public final class FullLayer implements AdapterLayer {
    private final String module;
    private final NDArray weight; // (d_out, d_in), the model's own array
    private final float[] base; // W0, row-major

    public FullLayer(String module, NDArray weight) {
        this.module = module;
        this.weight = weight;
        this.base = weight.toFloatArray();
    }

    @Override
    public String module() {
        return module;
    }

    @Override
    public int dIn() {
        return (int) weight.getShape().get(1);
    }

    @Override
    public int dOut() {
        return (int) weight.getShape().get(0);
    }

    /** The update is inside the weight already: nothing to add. */
    @Override
    public NDArray delta(NDArray x) {
        return null;
    }

    @Override
    public float[] explicitDelta() {
        float[] w = weight.toFloatArray();
        for (int i = 0; i < w.length; i++) {
            w[i] -= base[i];
        }
        return w;
    }

    @Override
    public Map<String, NDArray> parameters() {
        return Map.of("weight", weight);
    }

    @Override
    public void zero() {
        dev.morastream.models.llama.Tensors.assign(weight, base);
    }

    float[] base() {
        return base;
    }
}
