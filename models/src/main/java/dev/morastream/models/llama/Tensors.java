package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

/**
 * Creating and overwriting weights so that their memory is allocated by the engine.
 *
 * <p>{@code NDManager.create(float[])} and {@code NDArray.set(Buffer)} make PyTorch tensors that
 * wrap a Java direct buffer, whose alignment varies from run to run; the CPU BLAS then takes
 * alignment-dependent code paths and the same matmul can differ in the last bits between runs.
 * Weights made here live in engine memory (64-byte aligned), so training is bitwise repeatable
 * and a resumed run reproduces an uninterrupted one exactly.
 */
public final class Tensors {
    private Tensors() {}

    /** A new engine-owned F32 array holding {@code data}. */
    public static NDArray owned(NDManager manager, float[] data, Shape shape) {
        NDArray wrapped = manager.create(data, shape); // wraps a direct buffer
        NDArray owned = wrapped.mul(1f); // scalar-ok: nothing requires a gradient here. An op's result: a copy in engine-allocated memory
        wrapped.close();
        return owned;
    }

    /** Overwrites {@code target} in place (its engine memory is kept) with {@code data}. */
    public static void assign(NDArray target, float[] data) {
        try (NDManager tmp = target.getManager().newSubManager()) {
            NDArray src = tmp.create(data, target.getShape());
            target.subi(target).addi(src); // finite x: x - x = +0 exactly, then 0 + y = y exactly
        }
    }
}
