package dev.morastream.actors.djl;

import ai.djl.engine.Engine;

/**
 * PyTorch's autograd switch is per thread and starts ON in every new thread; DJL turns it off only
 * on the thread that loads the engine, and a {@code GradientCollector} restores the mode it found.
 * On a Pekko dispatcher thread the optimizer's in-place updates then fail ("a leaf Variable that
 * requires grad is being used in an in-place operation") and plain forwards record graphs. Actors
 * that run DJL call {@link #off()} before their work.
 */
public final class GradMode {
    private static final boolean PYTORCH = "PyTorch".equals(Engine.getInstance().getEngineName());

    private GradMode() {}

    /** Turns autograd recording off on the calling thread (a no-op on other engines). */
    public static void off() {
        if (PYTORCH) {
            ai.djl.pytorch.jni.JniUtils.setGradMode(false);
        }
    }
}
