// A stand-in for the few Unreal Core types the Presence plugin's engine-independent core
// uses (FString, TArray, FDateTime, StringCast, the reflection macros as no-ops), so that
// tests/unreal can compile and run that core without an Unreal Engine. Same names and
// call shapes as UE5; TCHAR is 16-bit as on Windows, so the UTF-8 conversions are real.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#define USTRUCT(...)
#define UPROPERTY(...)
#define GENERATED_BODY()
#define PRESENCE_API

using int32 = std::int32_t;
using int64 = std::int64_t;
using ANSICHAR = char;
using UTF8CHAR = unsigned char;
using TCHAR = char16_t;

template <typename T>
class TArray {
public:
    int32 Add(T Item) {
        Items.push_back(std::move(Item));
        return static_cast<int32>(Items.size()) - 1;
    }
    int32 Num() const { return static_cast<int32>(Items.size()); }
    void Reset() { Items.clear(); }
    T &operator[](int32 I) { return Items[static_cast<size_t>(I)]; }
    const T &operator[](int32 I) const { return Items[static_cast<size_t>(I)]; }
    auto begin() const { return Items.begin(); }
    auto end() const { return Items.end(); }

private:
    std::vector<T> Items;
};

class FString {
public:
    FString() = default;
    FString(int32 Len, const TCHAR *Chars) : Data(Chars, static_cast<size_t>(Len)) {}
    explicit FString(const char16_t *Chars) : Data(Chars) {}
    const TCHAR *operator*() const { return Data.c_str(); }
    bool IsEmpty() const { return Data.empty(); }
    int32 Len() const { return static_cast<int32>(Data.size()); }
    bool operator==(const FString &Other) const { return Data == Other.Data; }
    bool operator!=(const FString &Other) const { return Data != Other.Data; }

private:
    std::u16string Data;
};

struct FDateTime {
    FDateTime() = default;
    explicit FDateTime(int64 InTicks) : Ticks(InTicks) {}
    int64 GetTicks() const { return Ticks; }

private:
    int64 Ticks = 0;
};

/** What StringCast answers: a converted, NUL-terminated buffer with Get() and Length(). */
template <typename CharT>
class TStubConversion {
public:
    explicit TStubConversion(std::vector<CharT> InText) : Text(std::move(InText)) { Text.push_back(0); }
    const CharT *Get() const { return Text.data(); }
    int32 Length() const { return static_cast<int32>(Text.size()) - 1; }

private:
    std::vector<CharT> Text;
};

template <typename To>
TStubConversion<To> StringCast(const UTF8CHAR *Source, int32 Len);

/** UTF-8 to UTF-16; malformed sequences become U+FFFD. */
template <>
inline TStubConversion<TCHAR> StringCast<TCHAR>(const UTF8CHAR *Source, int32 Len) {
    std::vector<TCHAR> Out;
    for (int32 I = 0; I < Len;) {
        const UTF8CHAR C = Source[I];
        int32 Extra = C < 0x80 ? 0 : (C >> 5) == 0x6 ? 1 : (C >> 4) == 0xE ? 2 : (C >> 3) == 0x1E ? 3 : -1;
        if (Extra < 0 || I + Extra >= Len) {
            Out.push_back(u'\xFFFD');
            ++I;
            continue;
        }
        char32_t Cp = Extra == 0 ? C : Extra == 1 ? (C & 0x1F) : Extra == 2 ? (C & 0x0F) : (C & 0x07);
        for (int32 K = 1; K <= Extra; ++K) Cp = (Cp << 6) | (Source[I + K] & 0x3F);
        I += Extra + 1;
        if (Cp >= 0x10000) {
            Cp -= 0x10000;
            Out.push_back(static_cast<char16_t>(0xD800 + (Cp >> 10)));
            Out.push_back(static_cast<char16_t>(0xDC00 + (Cp & 0x3FF)));
        } else {
            Out.push_back(static_cast<char16_t>(Cp));
        }
    }
    return TStubConversion<TCHAR>(std::move(Out));
}

/** UTF-16 (NUL-terminated) to UTF-8. */
template <typename To>
TStubConversion<To> StringCast(const TCHAR *Source);

template <>
inline TStubConversion<UTF8CHAR> StringCast<UTF8CHAR>(const TCHAR *Source) {
    std::vector<UTF8CHAR> Out;
    for (size_t I = 0; Source[I] != 0; ++I) {
        char32_t Cp = Source[I];
        if (Cp >= 0xD800 && Cp < 0xDC00 && Source[I + 1] >= 0xDC00 && Source[I + 1] < 0xE000) {
            Cp = 0x10000 + ((Cp - 0xD800) << 10) + (Source[I + 1] - 0xDC00);
            ++I;
        }
        if (Cp < 0x80) {
            Out.push_back(static_cast<UTF8CHAR>(Cp));
        } else if (Cp < 0x800) {
            Out.push_back(static_cast<UTF8CHAR>(0xC0 | (Cp >> 6)));
            Out.push_back(static_cast<UTF8CHAR>(0x80 | (Cp & 0x3F)));
        } else if (Cp < 0x10000) {
            Out.push_back(static_cast<UTF8CHAR>(0xE0 | (Cp >> 12)));
            Out.push_back(static_cast<UTF8CHAR>(0x80 | ((Cp >> 6) & 0x3F)));
            Out.push_back(static_cast<UTF8CHAR>(0x80 | (Cp & 0x3F)));
        } else {
            Out.push_back(static_cast<UTF8CHAR>(0xF0 | (Cp >> 18)));
            Out.push_back(static_cast<UTF8CHAR>(0x80 | ((Cp >> 12) & 0x3F)));
            Out.push_back(static_cast<UTF8CHAR>(0x80 | ((Cp >> 6) & 0x3F)));
            Out.push_back(static_cast<UTF8CHAR>(0x80 | (Cp & 0x3F)));
        }
    }
    return TStubConversion<UTF8CHAR>(std::move(Out));
}
