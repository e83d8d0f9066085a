package dev.morastream.ops.cli;

import java.nio.file.Path;

/** Where the project's shipped files are. */
final class Paths {
    private Paths() {}

    /** The repository (or install) root: {@code -Dmora.home}, else the working directory. */
    static Path home() {
        return Path.of(System.getProperty("mora.home", ".")).toAbsolutePath().normalize();
    }

    /** The shipped tiny base model. */
    static Path tinyModel() {
        return home().resolve("base-models").resolve("tiny");
    }
}
