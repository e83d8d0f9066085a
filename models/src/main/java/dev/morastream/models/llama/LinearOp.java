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

    /**
     * What this op adds to the plain layer on {@code x}, so that rows of several ops can share one
     * base GEMM ({@link RowGroupedOp}). The default derives it from {@link #apply} (two GEMMs);
     * adapters override it with their update alone.
     *
     * @param x input {@code (N, d_in)}
     * @param weight {@code (d_out, d_in)}
     * @return {@code (N, d_out)} in the manager of {@code x}, or {@code null} when the op adds
     *     nothing to this module
     */
    default NDArray delta(String module, NDArray x, NDArray weight) {
        return apply(module, x, weight, null).sub(PLAIN.apply(module, x, weight, null));
    }

    /**
     * Whether {@link #apply} on {@code module} is exactly the plain layer plus {@link #delta}
     * (nothing when it is {@code null}), with a {@code delta} that does not recompute the base
     * GEMM and takes any input {@code (..., d_in)}: then the model may compute the base GEMMs of
     * modules that read the same input as one (q/k/v, gate/up) and add each module's update to its
     * own slice. Default {@code false}: the model calls {@link #apply} per module.
     */
    default boolean sharesBase(String module) {
        return false;
    }

    /** The plain layer. Result belongs to the manager of {@code x} (its first operand). */
    LinearOp PLAIN = new Plain();

    /** {@link #PLAIN}: {@code x W^T + b}, no update. */
    final class Plain implements LinearOp {
        private Plain() {}

        @Override
        public NDArray apply(String module, NDArray x, NDArray weight, NDArray bias) {
            return bias == null
                    ? Linear.linear(x, weight).singletonOrThrow()
                    : Linear.linear(x, weight, bias).singletonOrThrow();
        }

        @Override
        public NDArray delta(String module, NDArray x, NDArray weight) {
            return null;
        }

        @Override
        public boolean sharesBase(String module) {
            return true;
        }
    }
}
