package dev.morastream.models;

import java.nio.file.Path;

/** Where the shipped tiny base model is, seen from a module's test working directory. */
public final class ShippedModel {
    public static final Path DIR = Path.of("..", "base-models", "tiny").toAbsolutePath().normalize();

    private ShippedModel() {}
}
