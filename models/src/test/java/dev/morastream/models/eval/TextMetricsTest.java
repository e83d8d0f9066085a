package dev.morastream.models.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class TextMetricsTest {
    @Test
    void charAccuracyCountsSamePositionsOverTheTruth() {
        assertEquals(1.0, TextMetrics.charAccuracy("abcd", "abcd"));
        assertEquals(0.75, TextMetrics.charAccuracy("abxd", "abcd"));
        assertEquals(0.5, TextMetrics.charAccuracy("ab", "abcd")); // too short: missing chars count as wrong
        assertEquals(1.0, TextMetrics.charAccuracy("abcdef", "abc")); // extra chars beyond the truth are ignored
        assertEquals(0.0, TextMetrics.charAccuracy("bcd", "abc")); // shifted by one: position by position
        assertEquals(0.0, TextMetrics.charAccuracy("", "abc"));
        assertEquals(1.0, TextMetrics.charAccuracy("", ""));
        assertEquals(0.0, TextMetrics.charAccuracy("x", ""));
    }

    @Test
    void exactMatchIgnoresSurroundingWhitespaceOnly() {
        assertTrue(TextMetrics.exactMatch("  Paris\n", "Paris"));
        assertTrue(TextMetrics.exactMatch("", " \t"));
        assertFalse(TextMetrics.exactMatch("paris", "Paris"));
        assertFalse(TextMetrics.exactMatch("Pa ris", "Paris"));
    }
}
