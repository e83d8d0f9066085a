package dev.morastream.models.checkpoint;

import java.util.Arrays;

/**
 * A named tensor held in memory as F32, whatever its on-disk type.
 *
 * @param name checkpoint name, e.g. {@code model.layers.0.self_attn.q_proj.weight}
 * @param shape dimensions, row-major
 * @param data {@code prod(shape)} values
 */
public record Tensor(String name, long[] shape, float[] data) {
    public Tensor {
        long n = numel(shape);
        if (n != data.length) {
            throw new IllegalArgumentException(
                    name + ": shape " + Arrays.toString(shape) + " needs " + n + " values, got " + data.length);
        }
    }

    /** Number of elements of a shape. */
    public static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }
}
