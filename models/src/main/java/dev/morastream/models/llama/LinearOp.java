package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.nn.core.Linear;

/**
 * How the model applies one of its linear layers. The default is the frozen {@code x W^T + b};
 * adapters (LoRA, MoRA) replace it per module to add their update.
 */
@FunctionalInterface
public interface LinearOp {
    /**
     * @param module HF module path, e.g. {@code model.layers.3.self_attn.q_proj}
     * @param x input {@code (..., d_in)}, owned by the step's manager
     * @param weight {@code (d_out, d_in)}
     * @param bias {@code (d_out)} or {@code null}
     * @return {@code (..., d_out)}, in the manager of {@code x}
     */
    NDArray apply(String module, NDArray x, NDArray weight, NDArray bias);

    /** The plain layer. Result belongs to the manager of {@code x} (its first operand). */
    LinearOp PLAIN = (module, x, weight, bias) ->
            bias == null
                    ? Linear.linear(x, weight).singletonOrThrow()
                    : Linear.linear(x, weight, bias).singletonOrThrow();
}
