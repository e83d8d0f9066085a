package dev.morastream.actors.serving;

import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.generate.GenerationResult;

/**
 * One answered request.
 *
 * @param servedBy what produced it: the base model's name, or the exact {@code domain@vN}
 * @param version the adapter version, or {@code null} for the base model
 * @param result the generation
 * @param queueNanos time spent waiting for a worker
 * @param totalNanos from submission to the end of generation
 */
public record Served(String servedBy, AdapterVersion version, GenerationResult result, long queueNanos, long totalNanos) {}
