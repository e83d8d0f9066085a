package dev.morastream.models.checkpoint;

import java.nio.file.Path;

/** A checkpoint that cannot be used, naming the file and the field or tensor at fault. */
public final class CheckpointException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final transient Path file;
    private final String field;

    public CheckpointException(Path file, String field, String reason) {
        super(file + ": " + field + ": " + reason);
        this.file = file;
        this.field = field;
    }

    /** The file at fault. */
    public Path file() {
        return file;
    }

    /** The JSON field or tensor name at fault. */
    public String field() {
        return field;
    }
}
