package dev.morastream.models.llama;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.JniUtils;

/**
 * PyTorch's autograd switch is per thread and starts ON in every new thread; DJL turns it off only
 * on the thread that loaded the engine, and a {@code GradientCollector} restores whatever mode it
 * found. Code that may run on any thread (actors, HTTP workers) calls {@link #off()} before
 * forwards that must not record graphs and before in-place updates of trainable arrays.
 */
public final class Autograd {
    private static final boolean PYTORCH = "PyTorch".equals(Engine.getInstance().getEngineName());

    private Autograd() {}

    /** Turns autograd recording off on the calling thread (a no-op on other engines). */
    public static void off() {
        if (PYTORCH) {
            JniUtils.setGradMode(false);
        }
    }
}
