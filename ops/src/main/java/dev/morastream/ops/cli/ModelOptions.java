package dev.morastream.ops.cli;

import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The {@code --model} option shared by commands that load a base model. */
final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR",
            description = "HuggingFace-layout Llama model directory (default: the shipped base-models/tiny).")
    Path model;

    Path dir() {
        return model != null ? model : Paths.tinyModel();
    }
}
