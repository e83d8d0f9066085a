package dev.morastream.models.llama;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;

/**
 * PyTorch's autograd switch, per thread.
 *
 * <p>libtorch's grad mode is thread-local ({@code c10::GradMode}) and starts ON in every new
 * thread; DJL turns it off only on the thread that loaded the engine. DJL's {@code
 * PtGradientCollector} adds a JVM-wide flag ({@code static AtomicBoolean isCollecting}) that allows
 * one collector at a time in the whole process, which would serialise every trainer of a JVM.
 * {@link #record()} is the per-thread replacement: it turns recording on for the calling thread
 * only, {@link Recording#backward} runs libtorch's backward through DJL's public JNI, and closing
 * turns recording off again (a fresh thread starts with it ON: every forward outside a recording
 * scope must not record). Several threads may record and run backward at once on
 * disjoint graphs (libtorch's autograd engine is thread-safe); each caller zeroes only its own
 * gradients.
 *
 * <p>Code that may run on any thread (actors, HTTP workers) calls {@link #off()} before forwards
 * that must not record graphs and before in-place updates of trainable arrays.
 */
public final class Autograd {
    private static final boolean PYTORCH = "PyTorch".equals(Engine.getInstance().getEngineName());

    private Autograd() {}

    /** Turns autograd recording off on the calling thread. */
    public static void off() {
        requirePyTorch();
        JniUtils.setGradMode(false);
    }

    /** Whether the calling thread records graphs now. */
    public static boolean recording() {
        requirePyTorch();
        return JniUtils.isGradMode();
    }

    /** Starts recording on the calling thread; closing turns recording off. */
    public static Recording record() {
        requirePyTorch();
        return new Recording();
    }

    private static void requirePyTorch() {
        if (!PYTORCH) {
            throw new IllegalStateException("morastream trains with DJL's PyTorch engine; the default engine is "
                    + Engine.getInstance().getEngineName());
        }
    }

    /** A recording scope of the calling thread. Not to be shared between threads. */
    public static final class Recording implements AutoCloseable {
        private final Thread owner = Thread.currentThread();

        private Recording() {
            JniUtils.setGradMode(true);
        }

        /**
         * Back-propagates a scalar {@code loss} (seed 1) into the {@code .grad} of every leaf that
         * requires a gradient; gradients accumulate into what is there.
         */
        public void backward(NDArray loss) {
            if (Thread.currentThread() != owner) {
                throw new IllegalStateException("backward on another thread than the one that recorded");
            }
            if (loss.getShape().dimension() != 0) {
                throw new IllegalArgumentException("backward needs a scalar loss, got " + loss.getShape());
            }
            NDArray seed = loss.onesLike(); // ()
            JniUtils.backward((PtNDArray) loss, (PtNDArray) seed, false, false);
        }

        @Override
        public void close() {
            JniUtils.setGradMode(false);
        }
    }
}
