package dev.morastream.streams.state;

/** A state store operation failed: the store could not be read or a commit did not happen. */
public class StateStoreException extends RuntimeException {
    public StateStoreException(String message) {
        super(message);
    }

    public StateStoreException(String message, Throwable cause) {
        super(message, cause);
    }
}
