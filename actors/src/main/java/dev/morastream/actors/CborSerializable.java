package dev.morastream.actors;

/**
 * Marks the messages that cross nodes of a cluster: bound to Pekko's Jackson CBOR serializer in
 * {@code reference.conf} ({@code pekko.actor.serialization-bindings}). Every such message, and
 * everything it carries, must round-trip through it ({@code SerializationTest}).
 */
public interface CborSerializable {}
