// The plain structs the Presence plugin hands to Blueprint: event payloads and answers.
// Only Core types (FString, TArray, FDateTime, int32, int64): tests/unreal compiles this
// header against a small stand-in for them.
#pragma once

#include "CoreMinimal.h"

#include "PresenceTypes.generated.h"

/** A user as one viewer sees it (get_user, queries, channel members). */
USTRUCT(BlueprintType)
struct PRESENCE_API FPresenceUser
{
    GENERATED_BODY()

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString UserId;

    /** Online as this viewer sees it. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    bool bOnline = false;

    /** Known only in own views (the host's, or the user's own connections). */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    bool bInvisible = false;

    /** Empty when the user has no status. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString Status;

    /** FDateTime's zero value when the user was never active. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FDateTime LastActive;

    /** Custom fields: names and their values as JSON text. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    TArray<FString> CustomFieldNames;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    TArray<FString> CustomFieldJson;
};

/** A channel with its members and watchers (watch_channel, query_channels). */
USTRUCT(BlueprintType)
struct PRESENCE_API FPresenceChannelState
{
    GENERATED_BODY()

    /** "type:id" */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString ChannelId;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    int32 MemberCount = 0;

    /** Distinct visible users watching. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    int32 WatcherCount = 0;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    TArray<FPresenceUser> Members;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    TArray<FPresenceUser> Watchers;
};

/** user.presence.changed: the payload of OnUserPresenceChanged. */
USTRUCT(BlueprintType)
struct PRESENCE_API FPresenceChange
{
    GENERATED_BODY()

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString UserId;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    bool bOnline = false;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    bool bInvisible = false;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString Status;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FDateTime LastActive;
};

/** user.watching.start / stop: the payload of OnUserWatching. */
USTRUCT(BlueprintType)
struct PRESENCE_API FPresenceWatching
{
    GENERATED_BODY()

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString UserId;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString ChannelId;

    /** True for watching.start, false for watching.stop. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    bool bStarted = false;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    int32 WatcherCount = 0;
};

/** member.added / member.removed: the payload of OnMemberChanged. */
USTRUCT(BlueprintType)
struct PRESENCE_API FPresenceMembership
{
    GENERATED_BODY()

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString UserId;

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString ChannelId;

    /** True for member.added, false for member.removed. */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    bool bAdded = false;
};

/** connection.closed: the payload of OnConnectionClosed. */
USTRUCT(BlueprintType)
struct PRESENCE_API FPresenceConnectionClosed
{
    GENERATED_BODY()

    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString UserId;

    /** "disconnect", "timeout", "slow_consumer", ... */
    UPROPERTY(BlueprintReadOnly, Category = "Presence")
    FString Reason;
};
