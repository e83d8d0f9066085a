package dev.morastream.models.adapters;

import ai.djl.ndarray.NDArray;
import java.util.Map;

/** A trainable update added to one frozen linear layer {@code y = W0 x + b}. */
public interface AdapterLayer {
    /** HF module path, e.g. {@code model.layers.0.self_attn.q_proj}. */
    String module();

    int dIn();

    int dOut();

    /**
     * The update's contribution to the layer output.
     *
     * @param x input {@code (N, d_in)} (dropout already applied), owned by the step's manager
     * @return {@code (N, d_out)} in the manager of {@code x}
     */
    NDArray delta(NDArray x);

    /** The explicit {@code dW} ({@code d_out x d_in}, row-major) this update equals. */
    float[] explicitDelta();

    /** Trainable arrays by their PEFT suffix ({@code lora_A.weight}, {@code lora_B.weight}). */
    Map<String, NDArray> parameters();

    /** Number of trainable numbers. */
    default long trainableParameters() {
        return parameters().values().stream().mapToLong(NDArray::size).sum();
    }

    /** Resets the update to zero (the adapted layer equals the base layer again). */
    void zero();
}
