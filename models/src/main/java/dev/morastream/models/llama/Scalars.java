package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;

/**
 * Scalars as engine-owned tensors, for every arithmetic with a constant on a tensor whose backward
 * may be recorded.
 *
 * <p>DJL 0.36's {@code PtNDArray.mul(Number)} (and {@code div}, {@code add}, {@code sub}, {@code
 * pow} ...) wraps the number in a temporary tensor made by {@code torch::from_blob} over a Java
 * direct {@code ByteBuffer} and closes that tensor right after the op. Autograd keeps the scalar
 * for the backward of {@code mul}/{@code div}; once a GC has freed the buffer, the backward
 * multiplies by whatever bytes are there (1e19..1e38, NaN, or plausible zeros). A tensor made here
 * is allocated by libtorch ({@code torch::full}) in the manager of {@code like}, so it lives until
 * that manager (the step's) is closed. See docs/djl-scalar-gc.md.
 */
public final class Scalars {
    private Scalars() {}

    /** A 0-d tensor holding {@code v}, with the data type, device and manager of {@code like}. */
    public static NDArray of(NDArray like, double v) {
        return like.getManager().full(new Shape(), (float) v, like.getDataType(), like.getDevice()); // ()
    }

    /** {@code x * v} with an engine-owned scalar. */
    public static NDArray mul(NDArray x, double v) {
        return x.mul(of(x, v));
    }

    /** {@code x / v} with an engine-owned scalar. */
    public static NDArray div(NDArray x, double v) {
        return x.div(of(x, v));
    }

    /** {@code x + v} with an engine-owned scalar. */
    public static NDArray add(NDArray x, double v) {
        return x.add(of(x, v));
    }
}
