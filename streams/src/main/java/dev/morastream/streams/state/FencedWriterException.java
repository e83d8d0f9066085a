package dev.morastream.streams.state;

/**
 * This store instance may no longer write: another instance opened with the same writer identity
 * (a newer owner of the lineage, e.g. the trainer that took over a domain after this node was
 * thought dead). Its commit did not happen and none will; a zombie must stop, not retry.
 */
public final class FencedWriterException extends StateStoreException {
    private final String writerId;

    public FencedWriterException(String writerId, String message, Throwable cause) {
        super(message, cause);
        this.writerId = writerId;
    }

    /** The writer identity that a newer instance took over. */
    public String writerId() {
        return writerId;
    }
}
